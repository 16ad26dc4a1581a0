"""What the reports add to the managers' deal list (apps/stakeholders/panels.py): the filter "Stuck" and a
badge naming why each listed deal is stuck.

Both read the stuck states of the last refresh (:class:`~apps.reports.models.StuckState`, what the
stuck-deals page and the BI export read), not the live selector: evaluating an account's open deals takes
seconds at 100,000 deals, and the list must agree with the page. Beside the filter the list says when those
states are from ("as of …"), or that they are being computed, and, like the stuck-deals page, queues one
refresh (deduplicated, run by a worker) when they are stale or missing."""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from apps.gates.semantics import CLOSED_STATUS_IDS
from apps.kommo.models import KommoAccount, Lead
from apps.reports.models import StuckState
from apps.reports.selectors.stuck_states import stuck_freshness
from apps.stakeholders.panels import DealListFilter, DealListFlags


def _stuck_states() -> QuerySet[StuckState]:
    """The states of deals stuck at the last refresh and still open (a deal closed since is not stuck)."""
    return StuckState.objects.exclude(reasons="").exclude(lead__status_kommo_id__in=CLOSED_STATUS_IDS)


def deals_stuck(deals: QuerySet[Lead]) -> QuerySet[Lead]:
    """The open deals among ``deals`` that the stuck-deals report called stuck at its last refresh."""
    return deals.filter(pk__in=_stuck_states().values("lead_id"))


def stuck_flags(deals: Sequence[Lead]) -> dict[int, list[str]]:
    """Per deal pk: "Stuck: <reasons>" for the listed deals that were stuck at the last refresh."""
    rows = _stuck_states().filter(lead_id__in=[deal.pk for deal in deals]).values_list("lead_id", "text")
    return {lead_id: [f"Stuck: {text}"] for lead_id, text in rows}


def stuck_note(deals: QuerySet[Lead]) -> str:
    """How old the stuck states behind the filter and badges are, for the accounts of ``deals`` (the
    person's deals): "as of <time>", "stale" past twice the refresh interval, "being computed" when never
    refreshed. A stale or missing account gets one refresh queued, as on the stuck-deals page; nothing is
    evaluated here. Two queries, plus two per account that needs a refresh."""
    accounts = list(
        KommoAccount.objects.filter(Exists(deals.filter(account=OuterRef("pk")).order_by())).order_by("pk")
    )
    if not accounts:
        return ""
    freshness = stuck_freshness(accounts, now=timezone.now())
    as_of = f"as of {timezone.localtime(freshness.as_of):%d %b %Y %H:%M}" if freshness.as_of else ""
    if not freshness.stale and not freshness.missing:
        return as_of
    if freshness.missing:
        said = f"{as_of}, other accounts being computed" if as_of else "being computed"
    else:
        said = f"{as_of}, stale"
    queued = "a refresh is queued" if freshness.queued else "no refresh could be queued"
    return f"{said}; {queued}"


STUCK_FILTER = DealListFilter(name="stuck", label="Stuck", narrow=deals_stuck, note=stuck_note)
STUCK_FLAGS = DealListFlags(name="stuck", flags=stuck_flags)
