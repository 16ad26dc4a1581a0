"""The stuck-deals page's figures, read from the stuck states the beat task keeps
(:class:`~apps.reports.models.StuckState`, refreshed every ``REPORTS_EXPORT_STUCK_MINUTES`` by
:func:`apps.reports.export.stuck.stuck_states_refresh`) instead of evaluating every open deal per request:
the evaluation runs in Python over each open deal and its stakeholders, and grows with the open deals.

The definition is the selector's (:mod:`apps.reports.selectors.stuck`): the states are its answer at the
last refresh. A page request refreshes an account itself when its states are missing or older than twice
the beat's interval (beat not running, a fresh install), so the page is never further behind than that;
it says the moment its figures are as of.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum, TextField, Value
from django.db.models.functions import Coalesce, Concat

from apps.gates.semantics import CLOSED_STATUS_IDS
from apps.kommo.models import KommoAccount
from apps.reports.export.stuck import stuck_states_refresh
from apps.reports.framework import Scope
from apps.reports.models import StuckRefresh, StuckState
from apps.reports.selectors.stuck import Reason


def stuck_states_as_of(scope: Scope, accounts: list[KommoAccount]) -> dt.datetime | None:
    """The moment the stuck states of ``accounts`` are as of (the oldest account's refresh), after
    refreshing those whose states are missing, older than twice ``REPORTS_EXPORT_STUCK_MINUTES`` or
    later than ``scope.now``. None without accounts."""
    oldest = scope.now - dt.timedelta(minutes=2 * float(settings.REPORTS_EXPORT_STUCK_MINUTES))
    marks = dict(StuckRefresh.objects.filter(account__in=accounts).values_list("account_id", "refreshed_at"))
    moments = []
    for account in accounts:
        refreshed = marks.get(account.pk)
        if refreshed is None or not oldest <= refreshed <= scope.now:
            stuck_states_refresh(account=account, now=scope.now)
            refreshed = scope.now
        moments.append(refreshed)
    return min(moments, default=None)


def stuck_states(scope: Scope) -> QuerySet[StuckState]:
    """The stuck states of the deals in scope that are stuck and still open."""
    return (
        StuckState.objects.filter(scope.deals("lead__"))
        .exclude(reasons="")
        .exclude(lead__status_kommo_id__in=CLOSED_STATUS_IDS)
    )


@dataclass(frozen=True)
class ReasonTotal:
    code: Reason
    deals: int
    value: int


def stuck_reason_totals(scope: Scope) -> tuple[int, list[ReasonTotal]]:
    """How many deals in scope are stuck, and per reason the stuck deals for which it holds (a deal may
    have several) and their value: one query."""
    states = stuck_states(scope).annotate(
        codes=Concat(Value(";"), "reasons", Value(";"), output_field=TextField())
    )
    figures: dict[str, Any] = {}
    for code in Reason:
        holds = Q(codes__contains=f";{code.value};")
        figures[f"deals_{code.value}"] = Count("pk", filter=holds)
        figures[f"value_{code.value}"] = Coalesce(Sum("lead__price", filter=holds), 0)
    totals = states.aggregate(stuck=Count("pk"), **figures)
    return totals["stuck"], [
        ReasonTotal(code, totals[f"deals_{code.value}"], totals[f"value_{code.value}"]) for code in Reason
    ]


@dataclass(frozen=True)
class StuckListed:
    lead_id: int
    kommo_id: int
    account_id: int
    name: str
    stage: str
    manager: str
    value: int
    days_in_stage: float | None
    usual_days: float | None
    text: str
    codes: tuple[str, ...]


def stuck_states_listed(scope: Scope, limit: int) -> list[StuckListed]:
    """The ``limit`` stuck deals in scope of highest value (then by deal), with their stage and manager."""
    rows = (
        stuck_states(scope)
        .order_by("-lead__price", "lead_id")
        .values_list(
            "lead_id", "lead__kommo_id", "lead__account_id", "lead__name", "lead__status__name",
            "lead__responsible_user__name", "lead__price", "days_in_stage", "usual_days", "text", "reasons",
        )[:limit]
    )  # fmt: skip
    listed = []
    for lead_id, kommo_id, account_id, name, stage, manager, value, days, usual, text, reasons in rows:
        listed.append(
            StuckListed(
                lead_id=lead_id,
                kommo_id=kommo_id,
                account_id=account_id,
                name=name or "",
                stage=stage or "",
                manager=manager or "",
                value=value,
                days_in_stage=days,
                usual_days=usual,
                text=text,
                codes=tuple(reasons.split(";")),
            )
        )
    return listed
