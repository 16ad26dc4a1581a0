"""Funnel: the deals that entered each stage in the period, and how many of them went on."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q

from apps.kommo.models.mirror import LOST_STATUS_ID, WON_STATUS_ID, StageStay
from apps.reports.framework import Scope
from apps.reports.selectors.common import pipeline_count, share, stage_label, stays_in_scope

LeftHow = StageStay.LeftHow


@dataclass(frozen=True)
class FunnelRow:
    stage: str
    entered: int
    went_on: int | None
    to_next: float | None
    won: int
    to_won: float | None


def funnel(*, scope: Scope) -> list[FunnelRow]:
    """Per stage (pipeline order, won last): the deals that entered it in the period (a deal created in a
    stage enters it then; a deal that entered twice counts once); of those, the deals whose stay there
    ended by a move forward (to a later stage, skips included, or won) — at any time up to now — and the
    deals that are won now.

    A deal won now that entered a stage in the period was won after its start, so it is among the deals
    whose current stay, won, began since then (``won_since``): the period's rows and those, never every
    deal of the history (joined to the period's stays for their stage, the deals were read whole)."""
    won_since = StageStay.objects.filter(
        left_at__isnull=True,
        status_kommo_id=WON_STATUS_ID,
        entered_at__gte=scope.start,
        lead__status_kommo_id=WON_STATUS_ID,
    ).values("lead_id")
    rows = list(
        stays_in_scope(scope, join=False)
        .filter(entered_at__gte=scope.start, entered_at__lt=scope.end)
        .exclude(status_kommo_id=LOST_STATUS_ID)
        .values("status_kommo_id", "status__name", "status__sort", "pipeline__name", "pipeline__sort")
        .annotate(
            entered=Count("lead_id", distinct=True),
            went_on=Count("lead_id", distinct=True, filter=Q(left_how__in=[LeftHow.FORWARD, LeftHow.WON])),
            won=Count("lead_id", distinct=True, filter=Q(lead_id__in=won_since)),
        )
        .order_by("pipeline__sort", "pipeline__name", "status__sort", "status_kommo_id")
    )
    pipelines = pipeline_count(rows)
    result = []
    for row in rows:
        closed = row["status_kommo_id"] == WON_STATUS_ID
        result.append(
            FunnelRow(
                stage=stage_label(row, pipelines),
                entered=row["entered"],
                went_on=None if closed else row["went_on"],
                to_next=None if closed else share(row["went_on"], row["entered"]),
                won=row["won"],
                to_won=share(row["won"], row["entered"]),
            )
        )
    return result
