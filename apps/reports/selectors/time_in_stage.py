"""Time in stage: how long completed stays lasted, and how old the open ones are."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, DateTimeField, ExpressionWrapper, F, FloatField, Max, Value

from apps.reports.framework import Scope
from apps.reports.selectors.common import (
    CLOSED,
    open_stays_at_end,
    pipeline_count,
    stage_label,
    stays_in_scope,
)
from apps.reports.sql import DaysBetween, Percentile

DAY_SECONDS = 86400.0


@dataclass(frozen=True)
class TimeInStageRow:
    stage: str
    completed: int
    median: float | None
    p75: float | None
    cumulative_median: float | None
    open: int
    open_median_age: float | None
    open_oldest: float | None


_STAGE = (
    "status_kommo_id",
    "pipeline_kommo_id",
    "status__name",
    "status__sort",
    "pipeline__name",
    "pipeline__sort",
)


def time_in_stage(*, scope: Scope) -> list[TimeInStageRow]:
    """Per stage (not won or lost), in pipeline order:

    * completed stays that ended in the period: how many, the median and 75th percentile of their length
      (each stay on its own: a deal that came back has several), and the median *cumulative* time — each
      such stay plus the deal's earlier stays in the same stage;
    * stays open at the end of the period (now, for the current one): how many, their median age and the
      oldest, aged to that moment."""
    length = DaysBetween("left_at", "entered_at")
    # The stay plus the deal's earlier stays in the stage, written with the stay (StageStay.earlier_seconds):
    # a column of the rows already read, where it was a look-up of each stay's predecessors.
    cumulative = ExpressionWrapper(F("earlier_seconds") / DAY_SECONDS + length, output_field=FloatField())
    completed = (
        stays_in_scope(scope, join=False)
        .filter(left_at__gte=scope.start, left_at__lt=scope.end)
        .exclude(status_kommo_id__in=CLOSED)
        .values(*_STAGE)
        .annotate(
            completed=Count("id"),
            median=Percentile(length, 0.5),
            p75=Percentile(length, 0.75),
            cumulative_median=Percentile(cumulative, 0.5),
        )
    )
    age = DaysBetween(Value(scope.until, output_field=DateTimeField()), "entered_at")
    open_now = (
        open_stays_at_end(scope)
        .values(*_STAGE)
        .annotate(open=Count("id"), open_median_age=Percentile(age, 0.5), open_oldest=Max(age))
    )
    merged: dict[tuple[Any, Any], dict[str, Any]] = {}
    for row in [*completed, *open_now]:
        merged.setdefault((row["pipeline_kommo_id"], row["status_kommo_id"]), {}).update(row)
    rows = sorted(
        merged.values(),
        key=lambda row: (row["pipeline__sort"] or 0, row["pipeline__name"] or "", row["status__sort"] or 0),
    )
    pipelines = pipeline_count(rows)
    return [
        TimeInStageRow(
            stage=stage_label(row, pipelines),
            completed=row.get("completed", 0),
            median=row.get("median"),
            p75=row.get("p75"),
            cumulative_median=row.get("cumulative_median"),
            open=row.get("open", 0),
            open_median_age=row.get("open_median_age"),
            open_oldest=row.get("open_oldest"),
        )
        for row in rows
    ]
