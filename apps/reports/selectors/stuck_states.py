"""The stuck-deals page's figures, read from the stuck states the beat task keeps
(:class:`~apps.reports.models.StuckState`, refreshed every ``REPORTS_EXPORT_STUCK_MINUTES`` by
:func:`apps.reports.export.stuck.stuck_states_refresh`) instead of evaluating every open deal per request:
the evaluation runs in Python over each open deal and its stakeholders, and grows with the open deals.

The definition is the selector's (:mod:`apps.reports.selectors.stuck`): the states are its answer at the
last refresh. A request never refreshes them: when an account's states are missing or older than twice the
beat's interval it queues one refresh (deduplicated) and the page says how old its figures are.
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
from apps.reports.export.stuck import Queued, stuck_refresh_queue
from apps.reports.framework import Scope
from apps.reports.models import StuckRefresh, StuckState
from apps.reports.selectors.stuck import Reason


@dataclass(frozen=True)
class StuckFreshness:
    """How current the stuck states of the accounts in scope are."""

    as_of: dt.datetime | None  # the oldest refresh among the accounts refreshed at least once
    stale: bool  # an account's states are older than twice REPORTS_EXPORT_STUCK_MINUTES
    missing: bool  # an account's states were never computed
    queued: bool  # a refresh of each such account is queued (by this request or an earlier one)


def stuck_states_as_of(scope: Scope, accounts: list[KommoAccount]) -> StuckFreshness:
    """When the stuck states of ``accounts`` are as of; for each account whose states are missing or older
    than twice ``REPORTS_EXPORT_STUCK_MINUTES``, one refresh queued (never run here: at 100,000 deals it
    takes seconds). One query, plus two per account that needs a refresh."""
    return stuck_freshness(accounts, now=scope.now)


def stuck_freshness(accounts: list[KommoAccount], *, now: dt.datetime) -> StuckFreshness:
    """:func:`stuck_states_as_of` for any page that reads the stuck states (the deal list too)."""
    oldest = now - dt.timedelta(minutes=2 * float(settings.REPORTS_EXPORT_STUCK_MINUTES))
    marks = dict(StuckRefresh.objects.filter(account__in=accounts).values_list("account_id", "refreshed_at"))
    moments = []
    stale = missing = False
    queued = True
    for account in accounts:
        refreshed = marks.get(account.pk)
        if refreshed is not None:
            moments.append(refreshed)
        if refreshed is None or refreshed < oldest:
            missing = missing or refreshed is None
            stale = stale or refreshed is not None
            queued = stuck_refresh_queue(account=account, now=now) is not Queued.FAILED and queued
    return StuckFreshness(as_of=min(moments, default=None), stale=stale, missing=missing, queued=queued)


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
