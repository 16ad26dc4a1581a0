"""The stuck-deals selector's answer kept in :class:`~apps.reports.models.StuckState`, for the stuck-deals
page (which reads it instead of evaluating every open deal per request) and the export's ``stuck`` and
``stuck_reasons`` columns (the CSV's one ``COPY``, the JSON pages and the ``bi`` views read it with a join).

There is one definition of a stuck deal, :func:`apps.reports.selectors.stuck.stuck_deals`; this module
only runs it over an account's open deals, ``CHUNK`` at a time so that memory does not grow with the
account, and writes the rows that changed. It runs in Celery only (beat every
``REPORTS_EXPORT_STUCK_MINUTES``, and :func:`stuck_refresh_queue` when a page finds the states stale or
missing): at 100,000 deals it takes seconds, too long for a request.
"""

from __future__ import annotations

import datetime as dt
import enum

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.core.broker import publish_or_log
from apps.gates.semantics import CLOSED_STATUS_IDS
from apps.kommo.models import KommoAccount, Lead
from apps.reports.models import StuckRefresh, StuckState
from apps.reports.selectors.stuck import stuck_deals

CHUNK = 10_000
DETAILS = ("text", "days_in_stage", "usual_days")


def stuck_states_refresh(*, account: KommoAccount, now: dt.datetime | None = None) -> int:
    """Runs the stuck-deals selector over every open deal of ``account`` at ``now`` and writes the
    :class:`StuckState` rows that changed: their reasons (``changed`` = ``now`` when the codes changed),
    the reasons in words, the days in stage and the usual days; a deal no longer open keeps its row with
    empty reasons. Marks the account refreshed at ``now`` (:class:`StuckRefresh`). Returns the rows whose
    codes changed.

    One transaction, the mark included: a refresh cut short (the database crashed, the worker was killed)
    leaves the previous refresh's states whole and its time beside them, never some deals' new states under
    the old "as of". ``CHUNK`` bounds the memory, not the transaction; PostgreSQL's readers do not wait for
    it, and the page's claim of a refresh (:func:`stuck_refresh_queue`) waits only for the mark's row,
    written last."""
    now = now or timezone.now()
    with transaction.atomic():
        return _refresh(account, now)


def _refresh(account: KommoAccount, now: dt.datetime) -> int:
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
        found = {
            deal.lead.pk: StuckState(
                lead_id=deal.lead.pk,
                account=account,
                reasons=";".join(deal.codes),
                changed=now,
                text=deal.text,
                days_in_stage=deal.days_in_stage,
                usual_days=deal.usual.days if deal.usual is not None else None,
            )
            for deal in stuck_deals(account=account, leads_qs=Lead.objects.filter(pk__in=chunk), now=now)
        }
        rows = StuckState.objects.filter(lead_id__in=chunk).values_list("lead_id", "reasons", *DETAILS)
        known = {row[0]: row[1:] for row in rows}
        changed, details = [], []
        for lead_id in chunk:
            state = found.get(lead_id) or StuckState(lead_id=lead_id, account=account, changed=now)
            before = known.get(lead_id)
            if before is None and not state.reasons:
                continue  # never stuck: no row
            if before is None or before[0] != state.reasons:
                changed.append(state)
            elif tuple(before[1:]) != tuple(getattr(state, name) for name in DETAILS):
                details.append(state)
        StuckState.objects.bulk_create(
            changed,
            update_conflicts=True,
            unique_fields=["lead"],
            update_fields=["reasons", "changed", *DETAILS],
        )
        # The words and days move every day a deal stays stuck; ``changed`` (what the export's incremental
        # loads compare) moves only with the codes.
        StuckState.objects.bulk_create(
            details, update_conflicts=True, unique_fields=["lead"], update_fields=list(DETAILS)
        )
        written += len(changed)
    gone = Q(lead__is_deleted=True) | Q(lead__status_kommo_id__in=CLOSED_STATUS_IDS)
    written += (
        StuckState.objects.filter(gone, account=account)
        .exclude(reasons="")
        .update(reasons="", changed=now, text="", days_in_stage=None, usual_days=None)
    )
    StuckRefresh.objects.update_or_create(account=account, defaults={"refreshed_at": now, "queued_at": None})
    return written


class Queued(enum.Enum):
    QUEUED = "queued"  # by this call
    WAITING = "waiting"  # an earlier request's refresh has not finished yet
    FAILED = "failed"  # the broker did not take it


def stuck_refresh_queue(*, account: KommoAccount, now: dt.datetime | None = None) -> Queued:
    """Queues one refresh of ``account``'s stuck states (the task ``stuck_refresh_account``) unless one
    queued less than ``REPORTS_EXPORT_STUCK_MINUTES`` ago has not finished: the claim is a conditional
    update of ``StuckRefresh.queued_at``, so many viewers of the same stale page queue one refresh, and a
    refresh lost with its worker is queued again after that interval. When the broker refuses the task the
    claim is given back (the next viewer tries again) and the answer is ``FAILED``."""
    from apps.reports.tasks import stuck_refresh_account  # the tasks module imports this one

    now = now or timezone.now()
    StuckRefresh.objects.get_or_create(account=account)
    again_before = now - dt.timedelta(minutes=float(settings.REPORTS_EXPORT_STUCK_MINUTES))
    claimed = (
        StuckRefresh.objects.filter(account=account)
        .filter(Q(queued_at__isnull=True) | Q(queued_at__lt=again_before))
        .update(queued_at=now)
    )
    if not claimed:
        return Queued.WAITING
    if publish_or_log(lambda: stuck_refresh_account.delay(account.pk), what="the stuck states' refresh"):
        return Queued.QUEUED
    StuckRefresh.objects.filter(account=account, queued_at=now).update(queued_at=None)
    return Queued.FAILED
