"""Reads for the pages: a deal's time against its stage's limits, and its escalations."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from apps.escalations.models import Escalation, StageLimit
from apps.escalations.services import DAY
from apps.kommo.models import Lead, StageStay
from apps.kommo.models.outbound import OutboundChange
from apps.reports.selectors.stuck import stage_usual_times


def task_state(change: OutboundChange | None) -> str:
    """Where an escalation's task stands, in words."""
    if change is None:
        return "no task"
    if change.status == OutboundChange.Status.SENT:
        return "created in Kommo"
    if change.status in (OutboundChange.Status.FAILED, OutboundChange.Status.SKIPPED):
        return f"not created: {change.error or 'Kommo refused it'}"
    return "waiting to be sent to Kommo"


@dataclass(frozen=True)
class EscalationView:
    escalation: Escalation
    task_state: str


@dataclass(frozen=True)
class DealLimits:
    """The deal's current stay against its stage's limits, and every escalation of the deal."""

    limit: StageLimit | None
    entered_at: dt.datetime | None
    days: float | None
    usual_days: float | None
    past: int  # 0: within the limits; 1: past the first; 2: past the second
    escalations: list[EscalationView]


def usual_days_for(limit: StageLimit, *, now: dt.datetime | None = None) -> float | None:
    """The usual time shown beside a limit: the one entered in the admin, else the stage's measured one."""
    if limit.usual_days is not None:
        return float(limit.usual_days)
    usual = stage_usual_times(account=limit.status.account, now=now).get(limit.status_id)
    return usual.days if usual is not None else None


def deal_limits(*, lead: Lead, now: dt.datetime | None = None) -> DealLimits | None:
    """What the deal page shows; None when the deal's stage has no limit and it was never escalated."""
    now = now or timezone.now()
    limit = (
        StageLimit.objects.filter(status_id=lead.status_id, is_active=True)
        .select_related("status__account")
        .first()
        if lead.status_id is not None
        else None
    )
    rows = list(Escalation.objects.filter(lead=lead).select_related("status", "recipient", "outbound_change"))
    if limit is None and not rows:
        return None
    entered_at = days = usual = None
    past = 0
    if limit is not None:
        stay = StageStay.objects.filter(lead=lead, left_at__isnull=True, status=limit.status).first()
        if stay is not None:
            entered_at = stay.entered_at
            days = (now - stay.entered_at).total_seconds() / DAY
            if days > float(limit.limit_days):
                past = 1
            if limit.second_limit_days is not None and days > float(limit.second_limit_days):
                past = 2
        usual = usual_days_for(limit, now=now)
    return DealLimits(
        limit=limit,
        entered_at=entered_at,
        days=days,
        usual_days=usual,
        past=past,
        escalations=[EscalationView(row, task_state(row.outbound_change)) for row in rows],
    )
