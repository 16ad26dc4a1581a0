"""Outcomes: win rate, the length of won deals' cycle, and loss reasons by the stage lost at."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, Sum
from django.db.models.fields.json import KT

from apps.kommo.models.mirror import LOST_STATUS_ID, WON_STATUS_ID, Lead, StageStay
from apps.reports.framework import Scope
from apps.reports.selectors.common import (
    deals_from_first,
    pipeline_count,
    share,
    stage_label,
    stays_in_scope,
)
from apps.reports.sql import DaysBetween, Percentile

LeftHow = StageStay.LeftHow


@dataclass(frozen=True)
class OutcomeRow:
    manager: str
    won: int
    lost: int
    win_rate: float | None
    won_value: int
    cycle_median: float | None
    cycle_p75: float | None


def outcomes(*, scope: Scope) -> list[OutcomeRow]:
    """Deals won or lost in the period (they entered won or lost then), in total and per manager: counts,
    win rate = won ÷ (won + lost), the value won, and the median and 75th percentile of the won deals'
    cycle, from the deal's creation to its win."""
    cycle = DaysBetween("entered_at", "deal__created_at")
    closed = stays_in_scope(scope, join=False).filter(
        entered_at__gte=scope.start,
        entered_at__lt=scope.end,
        status_kommo_id__in=[WON_STATUS_ID, LOST_STATUS_ID],
    )
    closed = closed.annotate(deal=deals_from_first(closed))
    won = Q(status_kommo_id=WON_STATUS_ID)
    figures = {
        "won": Count("lead_id", distinct=True, filter=won),
        "lost": Count("lead_id", distinct=True, filter=Q(status_kommo_id=LOST_STATUS_ID)),
        "won_value": Sum("deal__price", filter=won),
        "cycle_median": Percentile(cycle, 0.5, filter=won),
        "cycle_p75": Percentile(cycle, 0.75, filter=won),
    }
    total = closed.aggregate(**figures)
    per_manager = (
        closed.values("deal__responsible_user_kommo_id", "deal__responsible_user__name")
        .annotate(**figures)
        .order_by("deal__responsible_user__name", "deal__responsible_user_kommo_id")
    )
    rows = [_outcome("All managers", total)] if total["won"] or total["lost"] else []
    for row in per_manager:
        name = row["deal__responsible_user__name"] or (
            f"user {row['deal__responsible_user_kommo_id']}"
            if row["deal__responsible_user_kommo_id"]
            else "nobody"
        )
        rows.append(_outcome(name, row))
    return rows


def _outcome(name: str, row: Mapping[str, Any]) -> OutcomeRow:
    return OutcomeRow(
        manager=name,
        won=row["won"],
        lost=row["lost"],
        win_rate=share(row["won"], row["won"] + row["lost"]),
        won_value=row["won_value"] or 0,
        cycle_median=row["cycle_median"],
        cycle_p75=row["cycle_p75"],
    )


def losses_by_stage(*, scope: Scope) -> tuple[list[str], list[dict[str, Any]]]:
    """Deals lost in the period, by the stage they were lost from (the stay that ended lost) and their
    loss reason. Returns the reasons (the column order: most frequent first) and one row per stage:
    ``{"stage": …, "total": n, "reason:<id>": n, …}``."""
    lost = stays_in_scope(scope, join=False).filter(
        left_how=LeftHow.LOST, left_at__gte=scope.start, left_at__lt=scope.end
    )
    rows = list(
        lost.annotate(deal=deals_from_first(lost))
        .values(
            "status_kommo_id",
            "status__name",
            "status__sort",
            "pipeline__name",
            "pipeline__sort",
            "deal__loss_reason_kommo_id",
        )
        .annotate(deals=Count("lead_id", distinct=True))
        .order_by("pipeline__sort", "pipeline__name", "status__sort", "status_kommo_id")
    )
    counts: dict[int | None, int] = {}
    for row in rows:
        reason = row["deal__loss_reason_kommo_id"]
        counts[reason] = counts.get(reason, 0) + row["deals"]
    names = _reason_names([reason for reason in counts if reason is not None])
    reasons = sorted(counts, key=lambda reason: (-counts[reason], reason is None, reason or 0))
    pipelines = pipeline_count(rows)
    by_stage: dict[str, dict[str, Any]] = {}
    for row in rows:
        label = stage_label(row, pipelines)
        target = by_stage.setdefault(label, {"stage": label, "total": 0})
        key = f"reason:{row['deal__loss_reason_kommo_id'] or 'none'}"
        target[key] = target.get(key, 0) + row["deals"]
        target["total"] += row["deals"]
    labels = [
        names.get(reason, f"reason {reason}") if reason is not None else "no reason given"
        for reason in reasons
    ]
    keys = [f"reason:{reason or 'none'}" for reason in reasons]
    return [f"{key}|{label}" for key, label in zip(keys, labels, strict=True)], list(by_stage.values())


def _reason_names(reason_ids: list[int]) -> dict[int, str]:
    """Kommo's names of loss reasons, from deals fetched with them embedded (``_embedded.loss_reason``)."""
    names = {}
    for reason in sorted(set(reason_ids)):
        # One deal that names the reason is enough: a look-up in the index of the reasons' names
        # (reports.0014), where every deal lost for the reason was read before (the history's).
        found = list(
            Lead.objects.filter(loss_reason_kommo_id=reason)
            .annotate(reason_name=KT("raw___embedded__loss_reason__0__name"))
            .exclude(reason_name__isnull=True)
            .order_by()
            .values_list("reason_name", flat=True)[:1]
        )
        if found and found[0]:
            names[reason] = found[0]
    return names
