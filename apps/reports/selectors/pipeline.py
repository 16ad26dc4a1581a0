"""Pipeline by buying stage: the open deals at the end of the period, per stage and per manager."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, F, QuerySet, Sum

from apps.kommo.models.mirror import StageStay
from apps.reports.framework import Scope
from apps.reports.selectors.common import (
    deals_from_first,
    open_stays_at_end,
    pipeline_count,
    share,
    stage_label,
)


@dataclass(frozen=True)
class StageRow:
    stage: str
    deals: int
    value: int
    share_of_value: float | None


@dataclass(frozen=True)
class ManagerRow:
    manager: str
    deals: int
    value: int
    share_of_value: float | None


def _open_stays(scope: Scope) -> tuple[QuerySet[StageStay], str]:
    """The stays open at the end of the period in a working stage, and how to name their deal's columns:
    for the current period the deals open now (``lead__``), for a past one the deals from the first of the
    stays on (``deal__``, :func:`deals_from_first`), so that neither reads every deal of the history."""
    stays = open_stays_at_end(scope)
    if scope.end >= scope.now:
        return stays, "lead__"
    return stays.annotate(deal=deals_from_first(stays)), "deal__"


def pipeline_by_stage(*, scope: Scope) -> list[StageRow]:
    """Open deals (not won, not lost) per stage at the end of the period: how many, their value (the deals'
    current price) and that value's share of all open value in scope. Stages in pipeline order."""
    stays, deal = _open_stays(scope)
    rows = list(
        stays.values(
            "status_id", "status_kommo_id", "status__name", "status__sort", "pipeline__name", "pipeline__sort"
        )
        .annotate(deals=Count("lead_id"), value=Sum(f"{deal}price"))
        .order_by("pipeline__sort", "pipeline__name", "status__sort", "status_kommo_id")
    )
    total = sum(row["value"] or 0 for row in rows)
    pipelines = pipeline_count(rows)
    return [
        StageRow(
            stage=stage_label(row, pipelines),
            deals=row["deals"],
            value=row["value"] or 0,
            share_of_value=share(row["value"], total),
        )
        for row in rows
    ]


def pipeline_by_manager(*, scope: Scope) -> list[ManagerRow]:
    """The same open deals per responsible manager, largest value first."""
    stays, deal = _open_stays(scope)
    rows = list(
        stays.values(
            manager_kommo_id=F(f"{deal}responsible_user_kommo_id"),
            manager_name=F(f"{deal}responsible_user__name"),
        )
        .annotate(deals=Count("lead_id"), value=Sum(f"{deal}price"))
        .order_by("-value", "manager_name")
    )
    total = sum(row["value"] or 0 for row in rows)
    return [
        ManagerRow(
            manager=row["manager_name"]
            or (f"user {row['manager_kommo_id']}" if row["manager_kommo_id"] else "nobody"),
            deals=row["deals"],
            value=row["value"] or 0,
            share_of_value=share(row["value"], total),
        )
        for row in rows
    ]
