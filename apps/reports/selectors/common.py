"""Pieces the report selectors share."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.db.models import Q, QuerySet

from apps.kommo.models.mirror import LOST_STATUS_ID, WON_STATUS_ID, StageStay
from apps.reports.framework import Scope

CLOSED = (WON_STATUS_ID, LOST_STATUS_ID)


def share(part: float | None, whole: float | None) -> float | None:
    """``part`` as a percentage of ``whole``; None when there is no whole."""
    if not whole:
        return None
    return 100.0 * float(part or 0) / float(whole)


def stays_in_scope(scope: Scope) -> QuerySet[StageStay]:
    return StageStay.objects.filter(scope.stays())


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


def stage_label(row: Mapping[str, Any], pipelines: int, prefix: str = "status") -> str:
    """A stage's name, with its pipeline's when the rows span several pipelines."""
    name = row.get(f"{prefix}__name") or f"stage {row.get(f'{prefix}_kommo_id', '?')}"
    if pipelines > 1 and row.get("pipeline__name"):
        return f"{row['pipeline__name']} / {name}"
    return str(name)


def pipeline_count(rows: Iterable[Mapping[str, Any]]) -> int:
    return len({row.get("pipeline__name") for row in rows})
