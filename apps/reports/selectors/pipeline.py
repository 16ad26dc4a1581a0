"""Pipeline by buying stage: the open deals at the end of the period, per stage and per manager."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Sum

from apps.reports.framework import Scope
from apps.reports.selectors.common import (
    CLOSED,
    open_at_end,
    pipeline_count,
    share,
    stage_label,
    stays_in_scope,
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


def pipeline_by_stage(*, scope: Scope) -> list[StageRow]:
    """Open deals (not won, not lost) per stage at the end of the period: how many, their value (the deals'
    current price) and that value's share of all open value in scope. Stages in pipeline order."""
    rows = list(
        stays_in_scope(scope)
        .filter(open_at_end(scope))
        .exclude(status_kommo_id__in=CLOSED)
        .values(
            "status_id", "status_kommo_id", "status__name", "status__sort", "pipeline__name", "pipeline__sort"
        )
        .annotate(deals=Count("lead_id"), value=Sum("lead__price"))
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
    rows = list(
        stays_in_scope(scope)
        .filter(open_at_end(scope))
        .exclude(status_kommo_id__in=CLOSED)
        .values("lead__responsible_user_kommo_id", "lead__responsible_user__name")
        .annotate(deals=Count("lead_id"), value=Sum("lead__price"))
        .order_by("-value", "lead__responsible_user__name")
    )
    total = sum(row["value"] or 0 for row in rows)
    return [
        ManagerRow(
            manager=row["lead__responsible_user__name"]
            or (
                f"user {row['lead__responsible_user_kommo_id']}"
                if row["lead__responsible_user_kommo_id"]
                else "nobody"
            ),
            deals=row["deals"],
            value=row["value"] or 0,
            share_of_value=share(row["value"], total),
        )
        for row in rows
    ]
