"""What the reports add to the managers' deal list (apps/stakeholders/panels.py): the filter "Stuck" and a
badge naming why each listed deal is stuck.

Both read the stuck states of the last refresh (:class:`~apps.reports.models.StuckState`, what the
stuck-deals page and the BI export read), not the live selector: evaluating an account's open deals takes
seconds at 100,000 deals, and the list must agree with the page."""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models import QuerySet

from apps.gates.semantics import CLOSED_STATUS_IDS
from apps.kommo.models import Lead
from apps.reports.models import StuckState
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


STUCK_FILTER = DealListFilter(name="stuck", label="Stuck", narrow=deals_stuck)
STUCK_FLAGS = DealListFlags(name="stuck", flags=stuck_flags)
