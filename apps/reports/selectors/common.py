"""Pieces the report selectors share."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.db.models import Count, FilteredRelation, Min, Q, QuerySet

from apps.kommo.models.mirror import LOST_STATUS_ID, WON_STATUS_ID, StageStay
from apps.reports.framework import Scope

CLOSED = (WON_STATUS_ID, LOST_STATUS_ID)


def share(part: float | None, whole: float | None) -> float | None:
    """``part`` as a percentage of ``whole``; None when there is no whole."""
    if not whole:
        return None
    return 100.0 * float(part or 0) / float(whole)


def stays_in_scope(scope: Scope, *, join: bool = True) -> QuerySet[StageStay]:
    """The stays of the deals in scope, unordered; ``join=False`` for a query that reads nothing of the
    deals but whether they are deleted (``Scope.deals``). Unordered because the model's default order (by
    deal) leaves a join of the deals table in Django's aggregate queries, which do not sort by it."""
    return StageStay.objects.filter(scope.stays(join=join)).order_by()


def deals_from_first(rows: QuerySet[Any]) -> FilteredRelation:
    """The deal of each of ``rows`` (stays or gate decisions of a period) as a join that reads the deals from
    the first of them by key on (``.annotate(deal=deals_from_first(rows))``, then ``deal__price``…).

    The condition holds for every one of the rows, so it changes no figure; what it changes is the plan.
    Joined plainly, the period's rows had each deal looked up by key (three index pages per row) or every
    deal of the account read and hashed, whichever PostgreSQL guessed cheaper: either grows with the
    history. Deals are numbered as they are created, and a period's rows are those of the deals alive in
    it, so from the first of them on is the deals of the last months, not of every year before."""
    # Asked with a count beside it: a lone minimum PostgreSQL answers by walking an index of every row by
    # deal from its start until one is in the period, which is most of the history.
    first = rows.order_by().aggregate(first=Min("lead_id"), rows=Count("lead_id"))["first"]
    return FilteredRelation("lead", condition=Q(lead__id__gte=first or 0))


def open_at_end(scope: Scope) -> Q:
    """Stays a deal was in at the end of the period (now, for a period that has not ended): for the current
    period the open stays of the deals open now.

    The deal's own "open now" is what lets PostgreSQL plan these by the open deals: from the stays alone it
    expects about one open stay in ten to be in a working stage (it cannot know that the open stays of the
    won and lost deals are nearly all of them), hashed every deal of the account to join them, and the
    query grew with the history; the deals' stages it estimates right, and starts from the open ones."""
    if scope.end >= scope.now:
        return Q(left_at__isnull=True) & ~Q(lead__status_kommo_id__in=CLOSED)
    return Q(entered_at__lt=scope.end) & (Q(left_at__isnull=True) | Q(left_at__gte=scope.end))


def open_stays_at_end(scope: Scope) -> QuerySet[StageStay]:
    """The stays of the deals in scope open at the end of the period in a working stage (neither won nor
    lost). For the current period they are read from the deals open now (``open_at_end``); for a past one
    from the stays that ended after the period or are still open in a working stage, and the deals are not
    joined to them for their deleted flag (``Scope.deals(join=False)``): joined, every deal of the history
    was read. The open stays of the won and lost deals — one per deal ever closed — are left out by their
    stage, which lets PostgreSQL read the open working stays from their own index."""
    current = scope.end >= scope.now
    return stays_in_scope(scope, join=current).filter(open_at_end(scope)).exclude(status_kommo_id__in=CLOSED)


def stage_label(row: Mapping[str, Any], pipelines: int, prefix: str = "status") -> str:
    """A stage's name, with its pipeline's when the rows span several pipelines."""
    name = row.get(f"{prefix}__name") or f"stage {row.get(f'{prefix}_kommo_id', '?')}"
    if pipelines > 1 and row.get("pipeline__name"):
        return f"{row['pipeline__name']} / {name}"
    return str(name)


def pipeline_count(rows: Iterable[Mapping[str, Any]]) -> int:
    return len({row.get("pipeline__name") for row in rows})
