"""The forecast page's reads: this quarter and the next from the latest snapshot of each pipeline, the deals
that move it most, and each past quarter's forecast (by method, at weeks 1, 4 and 8 of the quarter) against
the value won in it.

Figures are summed from the snapshots' deal rows, so the manager filter applies to them (a deal counts under
its current responsible manager, like every report); the pipeline filter picks the snapshots."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Exists, F, FloatField, Max, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from apps.kommo.models import Lead, StageStay
from apps.reports import forecast_method as fm
from apps.reports.framework import Scope
from apps.reports.models import ForecastCategory, ForecastSnapshot, ForecastSnapshotDeal

Category = ForecastCategory.Category
METHODS = ("weighted", "committee", "commit", "best_case")
METHOD_LABELS = {
    "weighted": "Stage-weighted",
    "committee": "Committee-adjusted",
    "commit": "Commit",
    "best_case": "Best case",
}
LEAD_WEEKS = (1, 4, 8)


def _deal_rows(scope: Scope) -> Q:
    """Snapshot deal rows of the deals in scope (the manager's, not deleted); the pipeline is the
    snapshot's."""
    return dataclasses.replace(scope, pipeline=None).deals("lead__")


def _snapshots(scope: Scope) -> QuerySet[ForecastSnapshot]:
    snapshots = ForecastSnapshot.objects.all()
    if scope.pipeline is not None:
        snapshots = snapshots.filter(
            account_id=scope.pipeline.account_id, pipeline_kommo_id=scope.pipeline.kommo_id
        )
    return snapshots


def _sums(snapshot_ids: list[int], scope: Scope, period: str) -> dict[int, dict[str, float]]:
    """Per snapshot, the forecast of its deals in scope expected in ``period``, by method and category."""
    value = Cast("value", FloatField())
    rows = (
        ForecastSnapshotDeal.objects.filter(_deal_rows(scope), snapshot_id__in=snapshot_ids, period=period)
        .values("snapshot_id")
        .annotate(
            weighted=Coalesce(Sum(value * F("p")), 0.0),
            committee=Coalesce(Sum(value * F("p_committee")), 0.0),
            commit=Coalesce(Sum(value, filter=Q(category=Category.COMMIT)), 0.0),
            best=Coalesce(Sum(value, filter=Q(category=Category.BEST_CASE)), 0.0),
            pipeline=Coalesce(Sum(value, filter=Q(category=Category.PIPELINE)), 0.0),
            deals=Coalesce(Sum(1), 0),
        )
        .order_by()
    )
    result = {}
    for row in rows:
        best_case = row["commit"] + row["best"]
        result[row["snapshot_id"]] = {
            "weighted": row["weighted"],
            "committee": row["committee"],
            "commit": row["commit"],
            "best_case": best_case,
            "pipeline": best_case + row["pipeline"],
            "deals": row["deals"],
        }
    return result


def latest_snapshots(scope: Scope) -> list[ForecastSnapshot]:
    """The newest snapshot of each pipeline in scope, taken by now."""
    newest = (
        _snapshots(scope)
        .filter(taken_at__lte=scope.now)
        .values("account_id", "pipeline_kommo_id")
        .annotate(week=Max("week"))
        .order_by()
    )
    wanted = Q(pk__in=[])
    for row in newest:
        wanted |= Q(
            account_id=row["account_id"], pipeline_kommo_id=row["pipeline_kommo_id"], week=row["week"]
        )
    return list(ForecastSnapshot.objects.filter(wanted).order_by("account_id", "pipeline_kommo_id"))


@dataclass(frozen=True)
class PeriodForecast:
    label: str
    weighted: float
    committee: float
    commit: float
    best_case: float
    pipeline: float
    deals: int


def forecast_now(*, scope: Scope) -> tuple[list[PeriodForecast], dt.datetime | None]:
    """The current and the next quarter of the latest snapshots, and when the oldest of them was taken."""
    snapshots = latest_snapshots(scope)
    if not snapshots:
        return [], None
    ids = [snapshot.pk for snapshot in snapshots]
    result = []
    for period, start in (("current", snapshots[0].current_start), ("next", snapshots[0].next_start)):
        sums = _sums(ids, scope, period).values()
        total = {key: sum(row[key] for row in sums) for key in (*METHODS, "pipeline", "deals")}
        result.append(
            PeriodForecast(
                fm.quarter_label(start),
                total["weighted"],
                total["committee"],
                total["commit"],
                total["best_case"],
                total["pipeline"],
                int(total["deals"]),
            )
        )
    return result, min(snapshot.taken_at for snapshot in snapshots)


def forecast_movers(*, scope: Scope, limit: int = 20) -> list[ForecastSnapshotDeal]:
    """The deals expected this quarter that weigh most in the forecast (value x p), from the latest
    snapshots."""
    ids = [snapshot.pk for snapshot in latest_snapshots(scope)]
    return list(
        ForecastSnapshotDeal.objects.filter(_deal_rows(scope), snapshot_id__in=ids, period="current")
        .select_related("lead")
        .annotate(weight=Cast("value", FloatField()) * F("p"))
        .order_by("-weight", "lead_kommo_id")[:limit]
    )


# -- the past quarters ------------------------------------------------------------------------------------


def closed_quarters(*, scope: Scope) -> list[dt.date]:
    """The quarters that have ended by now and end in the twelve months up to the end of the chosen
    period (the first days of those quarters, oldest first)."""
    today = timezone.localtime(scope.now).date()
    end = timezone.localtime(scope.end).date()
    year_before = dt.date(end.year - 1, end.month, min(end.day, 28))
    quarters = []
    start = fm.quarter_start(end)
    for _ in range(6):
        after = fm.quarter_after(start)
        if after <= today and year_before < after <= end:
            quarters.append(start)
        start = _quarter_before(start)
    return sorted(quarters)


def _quarter_before(start: dt.date) -> dt.date:
    index = start.year * 12 + start.month - 1 - 3
    return dt.date(index // 12, index % 12 + 1, 1)


def _aware(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time()))


def won_value(*, scope: Scope, start: dt.date) -> float:
    """A: the value (current budget) of the deals in scope won in the quarter starting ``start`` — that
    entered won (142) in it, in the chosen pipeline; a deal won twice in it counts once."""
    won = StageStay.objects.filter(
        lead=OuterRef("pk"),
        status_kommo_id=142,
        entered_at__gte=_aware(start),
        entered_at__lt=_aware(fm.quarter_after(start)),
    )
    if scope.pipeline is not None:
        won = won.filter(pipeline_kommo_id=scope.pipeline.kommo_id)
    leads = Lead.objects.filter(dataclasses.replace(scope, pipeline=None).deals()).filter(Exists(won))
    if scope.pipeline is not None:
        leads = leads.filter(account_id=scope.pipeline.account_id)
    return float(leads.aggregate(total=Coalesce(Sum("price"), 0))["total"])


@dataclass(frozen=True)
class PastQuarter:
    label: str
    start: dt.date
    actual: float
    # (method, lead week) -> forecast; absent when no snapshot was taken that week
    forecasts: dict[tuple[str, int], float]
    backtested: bool

    def accuracy(self, method: str, week: int) -> fm.Accuracy | None:
        forecast = self.forecasts.get((method, week))
        return None if forecast is None else fm.accuracy_of(actual=self.actual, forecast=forecast)


def forecast_history(*, scope: Scope) -> list[PastQuarter]:
    """Each closed quarter's value won and, for each lead week, the forecast of the first snapshot of each
    pipeline taken in that week of the quarter (days 7 x (week - 1) to 7 x week after its first day).
    Quarters without a snapshot in any of those weeks are left out."""
    quarters = closed_quarters(scope=scope)
    if not quarters:
        return []
    chosen: dict[tuple[dt.date, int], list[ForecastSnapshot]] = defaultdict(list)
    snapshots = (
        _snapshots(scope)
        .filter(current_start__in=quarters)
        .only("pk", "account_id", "pipeline_kommo_id", "taken_at", "current_start", "backtested")
        .order_by("taken_at", "pk")
    )
    seen: set[tuple[dt.date, int, int, int]] = set()
    for snapshot in snapshots:
        offset = (snapshot.taken_at - _aware(snapshot.current_start)).total_seconds() / 86400
        week = int(offset // 7) + 1
        key = (snapshot.current_start, week, snapshot.account_id, snapshot.pipeline_kommo_id)
        if week in LEAD_WEEKS and key not in seen:
            seen.add(key)
            chosen[(snapshot.current_start, week)].append(snapshot)
    sums = _sums([s.pk for group in chosen.values() for s in group], scope, "current")
    result = []
    for start in quarters:
        forecasts: dict[tuple[str, int], float] = {}
        backtested = False
        for week in LEAD_WEEKS:
            group = chosen.get((start, week))
            if not group:
                continue
            backtested |= any(snapshot.backtested for snapshot in group)
            for method in METHODS:
                forecasts[(method, week)] = sum(sums.get(s.pk, {}).get(method, 0.0) for s in group)
        if not forecasts:
            continue  # no snapshot in any of the lead weeks: nothing to compare
        result.append(
            PastQuarter(
                fm.quarter_label(start), start, won_value(scope=scope, start=start), forecasts, backtested
            )
        )
    return result


@dataclass(frozen=True)
class AccuracyRow:
    method: str
    week: int
    periods: int
    zero_periods: int
    error: float | None
    accuracy: float | None
    bias: float | None
    wape: float | None


def forecast_accuracy(*, history: list[PastQuarter]) -> list[AccuracyRow]:
    """Per method and lead week, over the closed quarters that have a forecast: the mean error, accuracy and
    bias of the quarters with something won (A > 0), how many had A = 0, and the WAPE over all of them."""
    rows = []
    for method in METHODS:
        for week in LEAD_WEEKS:
            scored = [(q, q.accuracy(method, week)) for q in history]
            present = [(q, a) for q, a in scored if a is not None]
            if not present:
                continue
            rows.append(
                AccuracyRow(
                    method,
                    week,
                    len(present),
                    sum(1 for _, a in present if a.actual_is_zero),
                    fm.mean(a.error for _, a in present),
                    fm.mean(a.accuracy for _, a in present),
                    fm.mean(a.bias for _, a in present),
                    fm.wape((a.actual, a.forecast) for _, a in present),
                )
            )
    return rows
