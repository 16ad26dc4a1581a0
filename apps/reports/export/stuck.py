"""The export's ``stuck`` and ``stuck_reasons`` columns: the stuck-deals selector's answer, kept in
:class:`~apps.reports.models.StuckState` so that the CSV (one ``COPY``), the JSON pages and the ``bi``
views read it with a join instead of running the selector per request or per row.

There is one definition of a stuck deal, :func:`apps.reports.selectors.stuck.stuck_reason_codes` (the
stuck-deals report's own); this module only runs it over an account's open deals, ``CHUNK`` at a time so
that memory does not grow with the account, and writes the rows whose codes changed.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.gates.semantics import CLOSED_STATUS_IDS
from apps.kommo.models import KommoAccount, Lead
from apps.reports.models import StuckState
from apps.reports.selectors.stuck import stuck_reason_codes

CHUNK = 10_000


def stuck_states_refresh(*, account: KommoAccount, now: dt.datetime | None = None) -> int:
    """Runs the stuck-deals selector over every open deal of ``account`` at ``now`` and writes the
    :class:`StuckState` rows whose reasons changed (``changed`` = ``now``); a deal no longer open keeps
    its row with empty reasons. Returns the rows written."""
    now = now or timezone.now()
    open_ids = (
        Lead.objects.filter(account=account, is_deleted=False)
        .exclude(status_kommo_id__in=CLOSED_STATUS_IDS)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    written = 0
    after = 0
    while True:
        chunk = list(open_ids.filter(pk__gt=after)[:CHUNK])
        if not chunk:
            break
        after = chunk[-1]
        codes = stuck_reason_codes(account=account, leads_qs=Lead.objects.filter(pk__in=chunk), now=now)
        known = dict(StuckState.objects.filter(lead_id__in=chunk).values_list("lead_id", "reasons"))
        changed = []
        for lead_id in chunk:
            reasons = ";".join(codes.get(lead_id, ()))
            if known.get(lead_id, "") != reasons:
                changed.append(StuckState(lead_id=lead_id, account=account, reasons=reasons, changed=now))
        with transaction.atomic():
            StuckState.objects.bulk_create(
                changed,
                update_conflicts=True,
                unique_fields=["lead"],
                update_fields=["reasons", "changed"],
            )
        written += len(changed)
    gone = Q(lead__is_deleted=True) | Q(lead__status_kommo_id__in=CLOSED_STATUS_IDS)
    written += (
        StuckState.objects.filter(gone, account=account).exclude(reasons="").update(reasons="", changed=now)
    )
    return written
