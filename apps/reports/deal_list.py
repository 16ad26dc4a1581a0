"""What the reports add to the managers' deal list (apps/stakeholders/panels.py): the filter "Stuck" and a
badge naming why each listed deal is stuck."""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models import QuerySet

from apps.kommo.models import KommoAccount, Lead
from apps.reports.selectors.stuck import stuck_deals, stuck_reason_codes
from apps.stakeholders.panels import DealListFilter, DealListFlags


def deals_stuck(deals: QuerySet[Lead]) -> QuerySet[Lead]:
    """The open deals among ``deals`` that the stuck-deals report calls stuck."""
    ids: set[int] = set()
    for account in KommoAccount.objects.filter(pk__in=deals.values("account_id")):
        ids |= stuck_reason_codes(account=account, leads_qs=deals).keys()
    return deals.filter(pk__in=ids)


def stuck_flags(deals: Sequence[Lead]) -> dict[int, list[str]]:
    """Per deal pk: "Stuck: <reasons>" for the listed deals that are stuck."""
    flags: dict[int, list[str]] = {}
    by_account: dict[int, list[int]] = {}
    for deal in deals:
        by_account.setdefault(deal.account_id, []).append(deal.pk)
    for account in KommoAccount.objects.filter(pk__in=by_account):
        listed = Lead.objects.filter(pk__in=by_account[account.pk])
        for stuck in stuck_deals(account=account, leads_qs=listed):
            flags[stuck.lead.pk] = [f"Stuck: {stuck.text}"]
    return flags


STUCK_FILTER = DealListFilter(name="stuck", label="Stuck", narrow=deals_stuck)
STUCK_FLAGS = DealListFlags(name="stuck", flags=stuck_flags)
