"""Legal review: how long deals spend in the legal stage, the reviews that are getting old, and the gate
blocks on the way out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Count, DateTimeField, F, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.urls import reverse

from apps.gates.models import GateDecision, GateRule
from apps.kommo.models.mirror import StageStay, Status
from apps.reports.framework import Scope
from apps.reports.selectors.common import (
    CLOSED,
    open_at_end,
    open_stays_at_end,
    pipeline_count,
    stage_label,
    stays_in_scope,
)
from apps.reports.sql import DaysBetween, Percentile
from apps.stakeholders.models import Stakeholder

LeftHow = StageStay.LeftHow
LAWYER = "lawyer"


def legal_stages(*, scope: Scope) -> list[int]:
    """The legal stages (Status pks): those gated by an active rule with a condition on the lawyer, else
    the stages whose name contains "legal"."""
    rules = GateRule.objects.filter(is_active=True, conditions__role__code=LAWYER)
    stages = Status.objects.filter(is_deleted=False)
    if scope.pipeline is not None:
        rules = rules.filter(pipeline=scope.pipeline)
        stages = stages.filter(pipeline=scope.pipeline)
    gated = sorted(set(rules.values_list("gated_stage_id", flat=True)))
    return gated or sorted(stages.filter(name__icontains="legal").values_list("pk", flat=True))


@dataclass(frozen=True)
class ReviewRow:
    stage: str
    passed: int
    median: float | None
    p75: float | None
    left_otherwise: int
    open: int
    stale: int
    blocks: int
    deals_blocked: int


@dataclass(frozen=True)
class OpenReviewRow:
    deal: str
    href: str
    manager: str
    value: int
    days: float
    lawyer: str
    blocks: int


def legal_reviews(*, scope: Scope) -> list[ReviewRow]:
    """Per legal stage: reviews that ended in the period by leaving forward (to a later stage or won) —
    how many and the median and 75th percentile of their length —, those that ended otherwise (back or
    lost), the reviews open at the end of the period and how many are older than the threshold, and the
    gate blocks of moves out of the stage decided in the period."""
    stages = legal_stages(scope=scope)
    if not stages:
        return []
    length = DaysBetween("left_at", "entered_at")
    ended = {
        row["status_id"]: row
        for row in stays_in_scope(scope, join=False)
        .filter(status_id__in=stages, left_at__gte=scope.start, left_at__lt=scope.end)
        .values("status_id")
        .annotate(
            passed=Count("id", filter=Q(left_how__in=[LeftHow.FORWARD, LeftHow.WON])),
            left_otherwise=Count("id", filter=~Q(left_how__in=[LeftHow.FORWARD, LeftHow.WON])),
            median=Percentile(length, 0.5, filter=Q(left_how__in=[LeftHow.FORWARD, LeftHow.WON])),
            p75=Percentile(length, 0.75, filter=Q(left_how__in=[LeftHow.FORWARD, LeftHow.WON])),
        )
    }
    stale_before = scope.until - dt.timedelta(days=settings.REPORTS_LEGAL_REVIEW_STALE_DAYS)
    opened = {
        row["status_id"]: row
        for row in open_stays_at_end(scope)
        .filter(status_id__in=stages)
        .values("status_id")
        .annotate(open=Count("id"), stale=Count("id", filter=Q(entered_at__lt=stale_before)))
    }
    status_rows = list(
        Status.objects.filter(pk__in=stages)
        .values(
            "pk", "kommo_id", "name", "pipeline_id", "pipeline__kommo_id", "pipeline__name", "pipeline__sort"
        )
        .order_by("pipeline__sort", "sort")
    )
    blocks = {
        (row["lead__pipeline_kommo_id"], row["from_status_kommo_id"]): row
        for row in GateDecision.objects.filter(
            scope.deals("lead__"),
            outcome=GateDecision.Outcome.BLOCKED,
            decided_at__gte=scope.start,
            decided_at__lt=scope.end,
            from_status_kommo_id__in=[row["kommo_id"] for row in status_rows],
        )
        .values("lead__pipeline_kommo_id", "from_status_kommo_id")
        .annotate(blocks=Count("id"), deals=Count("lead_id", distinct=True))
    }
    pipelines = pipeline_count(status_rows)
    result = []
    for status in status_rows:
        done: Mapping[str, Any] = ended.get(status["pk"], {})
        now: Mapping[str, Any] = opened.get(status["pk"], {})
        blocked: Mapping[str, Any] = blocks.get((status["pipeline__kommo_id"], status["kommo_id"]), {})
        result.append(
            ReviewRow(
                stage=stage_label(
                    {"status__name": status["name"], "pipeline__name": status["pipeline__name"]}, pipelines
                ),
                passed=done.get("passed", 0),
                median=done.get("median"),
                p75=done.get("p75"),
                left_otherwise=done.get("left_otherwise", 0),
                open=now.get("open", 0),
                stale=now.get("stale", 0),
                blocks=blocked.get("blocks", 0),
                deals_blocked=blocked.get("deals", 0),
            )
        )
    return result


def legal_reviews_stale(*, scope: Scope, limit: int = 100) -> list[OpenReviewRow]:
    """The reviews open at the end of the period for longer than the threshold, oldest first (at most
    ``limit``): the deal, its manager and value, days in review, the lawyer's approval and the gate blocks
    since it entered."""
    stages = legal_stages(scope=scope)
    if not stages:
        return []
    until = scope.until
    stale_before = until - dt.timedelta(days=settings.REPORTS_LEGAL_REVIEW_STALE_DAYS)
    lawyer = (
        Stakeholder.objects.filter(lead_id=OuterRef("lead_id"), role__code=LAWYER)
        .order_by("approval_status")
        .values("approval_status")[:1]
    )
    blocks = (
        GateDecision.objects.filter(
            lead_id=OuterRef("lead_id"),
            outcome=GateDecision.Outcome.BLOCKED,
            decided_at__gte=OuterRef("entered_at"),
        )
        .values("lead_id")
        .annotate(count=Count("id"))
        .values("count")[:1]
    )
    rows = (
        stays_in_scope(scope)
        .filter(open_at_end(scope), status_id__in=stages, entered_at__lt=stale_before)
        # Never a legal stage; without it the plan walked every stay by entry time for the oldest 100.
        .exclude(status_kommo_id__in=CLOSED)
        .annotate(
            days=DaysBetween(Value(until, output_field=DateTimeField()), "entered_at"),
            lawyer=Subquery(lawyer),
            blocks=Coalesce(Subquery(blocks, output_field=IntegerField()), 0),
        )
        .values(
            "lead_id",
            "lead__name",
            "lead__kommo_id",
            "lead__price",
            "lead__responsible_user__name",
            "days",
            "lawyer",
            "blocks",
        )
        # Oldest first, by the days in review rather than the entry time: ordered by a column with an
        # index, the plan walked every stay ever entered (a million at 100,000 deals) to find 100 open ones.
        .order_by(F("days").desc(), "lead_id")[:limit]
    )
    return [
        OpenReviewRow(
            deal=row["lead__name"] or f"deal {row['lead__kommo_id']}",
            href=reverse("stakeholders:deal_detail", args=[row["lead_id"]]),
            manager=row["lead__responsible_user__name"] or "",
            value=row["lead__price"],
            days=row["days"],
            lawyer=(row["lawyer"] or "no lawyer") if row["lawyer"] != "unknown" else "not recorded",
            blocks=row["blocks"],
        )
        for row in rows
    ]
