"""The check of the stage time limits: which deals stayed too long, and the tasks that tell someone.

:func:`escalations_check` reads, in a fixed number of queries, the open stays of the account that are past
their stage's first limit, leaves out the (stay, level) pairs already escalated, asks the stuck-deals
report what each deal lacks (:func:`apps.reports.selectors.stuck.stuck_deals`: roles absent, approvals
pending, no recent touch, open objections — one definition for the report and the tasks), and for each
new (stay, level) writes, in one transaction, the :class:`~apps.escalations.models.Escalation` and the
outbound task change. The unique constraint on the escalation and the change's unique idempotency key
make a second check, running at the same time or later, write nothing for the same stay and level.
:func:`escalations_enforce` then sends what the outbound plan says is due: the tasks go out in batches
of 250 per request, as the gates' do.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.escalations.models import CLOSED_STATUS_IDS, Escalation, HeadOfSales, StageLimit
from apps.kommo.client import KommoClient
from apps.kommo.models import KommoAccount, Lead, StageStay
from apps.kommo.models.outbound import OutboundChange
from apps.kommo.services.outbound import FlushResult, outbound_change_enqueue, outbound_changes_flush
from apps.reports.selectors.stuck import Reason, UsualTime, stage_usual_times, stuck_deals

logger = logging.getLogger(__name__)

Level = Escalation.Level
DAY = 86400.0
# The stuck-deals reasons that say what a deal lacks; "overdue" is what the task is about, and "no open
# task" stops being true with the task itself.
MISSING_REASONS = frozenset(Reason) - {Reason.STAGE_OVERDUE, Reason.NO_OPEN_TASK}
NOTHING_MISSING = "nothing the portal can see"
IDEMPOTENCY_PREFIX = "escalation:"
WRITE_CHUNK = 100


def days_text(days: float | Decimal) -> str:
    """A duration in days as a person says it: "3 days", "1 day", "12 hours"."""
    value = float(days)
    if value < 1:
        hours = max(1, round(value * 24))
        return "1 hour" if hours == 1 else f"{hours} hours"
    whole = int(value)
    return "1 day" if whole == 1 else f"{whole} days"


def escalation_marker(
    *, level: int, lead_kommo_id: int, status_kommo_id: int, entered_at: dt.datetime
) -> str:
    """The mark the portal leaves in an escalation task's text, so that it can find the task in Kommo
    (which keeps no client reference on tasks) before it sends one whose outcome it does not know."""
    return (
        f"[portal escalation {level} · deal {lead_kommo_id} · stage {status_kommo_id} "
        f"since {entered_at:%Y-%m-%d %H:%M:%S}]"
    )


def _decimal(value: float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class _Due:
    stay: StageStay
    limit: StageLimit
    level: int
    limit_days: Decimal
    days: float


@dataclass
class CheckResult:
    past_limit: int = 0  # open stays past a first limit
    escalated: int = 0  # escalations written now
    already: int = 0  # (stay, level) pairs escalated before (or by a concurrent check)
    no_head_of_sales: int = 0  # stays past a second limit while the account has no head of sales


def _due(account_id: int, now: dt.datetime) -> tuple[list[_Due], CheckResult]:
    """The (stay, level) pairs past their limit and not escalated yet, and the counts so far."""
    limits = {
        limit.status_id: limit
        for limit in StageLimit.objects.filter(is_active=True, status__account_id=account_id)
        .exclude(status__kommo_id__in=CLOSED_STATUS_IDS)
        .select_related("status")
    }
    if not limits:
        return [], CheckResult()
    past = Q()
    for limit in limits.values():
        past |= Q(status_id=limit.status_id, entered_at__lt=now - dt.timedelta(days=float(limit.limit_days)))
    stays = list(
        StageStay.objects.filter(past, account_id=account_id, left_at__isnull=True)
        .filter(lead__is_deleted=False, lead__status_id=F("status_id"))
        .select_related("lead__responsible_user", "status")
        .order_by("lead_id")
    )
    head = HeadOfSales.objects.filter(account_id=account_id).exists()
    done = set(
        Escalation.objects.filter(lead_id__in=[stay.lead_id for stay in stays]).values_list(
            "lead_id", "status_kommo_id", "stay_entered_at", "level"
        )
    )
    due: list[_Due] = []
    counts = CheckResult(past_limit=len(stays))
    for stay in stays:
        assert stay.status_id is not None  # filtered on a limited stage
        limit = limits[stay.status_id]
        days = (now - stay.entered_at).total_seconds() / DAY
        levels = [(Level.MANAGER, limit.limit_days)]
        second = limit.second_limit_days
        if second is not None and days > float(second):
            if head:
                levels.append((Level.HEAD_OF_SALES, second))
            elif (stay.lead_id, stay.status_kommo_id, stay.entered_at, Level.HEAD_OF_SALES) not in done:
                counts.no_head_of_sales += 1
        for level, limit_days in levels:
            if (stay.lead_id, stay.status_kommo_id, stay.entered_at, level) in done:
                counts.already += 1
            else:
                due.append(_Due(stay, limit, level, limit_days, days))
    return due, counts


def _missing(account: KommoAccount, lead_ids: set[int], now: dt.datetime) -> dict[int, list[str]]:
    """What each deal lacks, in the stuck-deals report's words."""
    found: dict[int, list[str]] = {}
    for deal in stuck_deals(account=account, leads_qs=Lead.objects.filter(pk__in=lead_ids), now=now):
        found[deal.lead.pk] = [reason.text for reason in deal.reasons if reason.code in MISSING_REASONS]
    return found


def _task_text(due: _Due, missing: list[str], usual: float | None) -> str:
    lead = due.stay.lead
    deal = lead.name or f"Deal {lead.kommo_id}"
    stage = due.stay.status.name if due.stay.status is not None else f"stage {due.stay.status_kommo_id}"
    usual_words = f"; usual {days_text(usual)}" if usual is not None else ""
    lacks = "; ".join(missing) if missing else NOTHING_MISSING
    if due.level == Level.MANAGER:
        return (
            f"{deal} has been in {stage} for {days_text(due.days)}, past its limit of "
            f"{days_text(due.limit_days)}{usual_words}. Missing: {lacks}. Move it on, or note why it waits."
        )
    manager = lead.responsible_user.name if lead.responsible_user is not None else "no responsible manager"
    return (
        f"Escalation: {deal} ({manager}) has been in {stage} for {days_text(due.days)}, past the second "
        f"limit of {days_text(due.limit_days)}{usual_words}. Missing: {lacks}."
    )


def _usual(item: _Due, usual_times: dict[int, UsualTime]) -> float | None:
    if item.limit.usual_days is not None:
        return float(item.limit.usual_days)
    measured = usual_times.get(item.stay.status_id) if item.stay.status_id is not None else None
    return measured.days if measured is not None else None


def _escalate(
    *,
    account: KommoAccount,
    item: _Due,
    lacks: list[str],
    head: HeadOfSales | None,
    usual: float | None,
    now: dt.datetime,
) -> bool:
    """Queue the task and write the escalation of one (stay, level), in a savepoint; False when it was
    escalated already (by a concurrent check: the idempotency key or the unique constraint says so)."""
    stay, lead = item.stay, item.stay.lead
    text = _task_text(item, lacks, usual)
    marker = escalation_marker(
        level=item.level,
        lead_kommo_id=lead.kommo_id,
        status_kommo_id=stay.status_kommo_id,
        entered_at=stay.entered_at,
    )
    if item.level == Level.MANAGER:
        recipient = lead.responsible_user
        recipient_kommo_id = lead.responsible_user_kommo_id or None
    else:
        assert head is not None
        recipient, recipient_kommo_id = head.kommo_user, head.kommo_user.kommo_id
    task_due = now + dt.timedelta(hours=item.limit.task_due_hours)
    try:
        with transaction.atomic():
            change, created = outbound_change_enqueue(
                account=account,
                kind=OutboundChange.Kind.TASK_CREATE,
                entity_kommo_id=lead.kommo_id,
                payload={
                    "text": f"{text}\n{marker}",
                    "complete_till": int(task_due.timestamp()),
                    "responsible_user_id": recipient_kommo_id,
                    "task_type_id": 1,
                    "marker": marker,
                },
                idempotency_key=(
                    f"{IDEMPOTENCY_PREFIX}{lead.pk}:{stay.status_kommo_id}:"
                    f"{stay.entered_at:%Y%m%dT%H%M%S.%f}:{item.level}"
                ),
            )
            if not created:
                return False
            Escalation.objects.create(
                account=account,
                lead=lead,
                status=stay.status,
                status_kommo_id=stay.status_kommo_id,
                stay_entered_at=stay.entered_at,
                level=item.level,
                limit_days=item.limit_days,
                usual_days=_decimal(usual) if usual is not None else None,
                days_in_stage=_decimal(item.days),
                missing=lacks,
                recipient=recipient,
                recipient_kommo_id=recipient_kommo_id,
                task_text=text,
                task_due_at=task_due,
                outbound_change=change,
                escalated_at=now,
            )
    except IntegrityError:
        # A concurrent check escalated this stay and level first (the unique constraint decided).
        return False
    return True


def escalations_check(*, account_id: int, now: dt.datetime | None = None) -> CheckResult:
    """Escalate every open stay of the account past a limit of its stage, once per stay and level: write
    the escalations and queue their tasks (nothing is sent here). Safe to run twice, and concurrently."""
    now = now or timezone.now()
    account = KommoAccount.objects.get(pk=account_id)
    due, result = _due(account_id, now)
    if not due:
        return result
    head = HeadOfSales.objects.filter(account_id=account_id).select_related("kommo_user").first()
    missing = _missing(account, {item.stay.lead_id for item in due}, now)
    usual_times = stage_usual_times(account=account, now=now)
    # One transaction per chunk (a savepoint per escalation): a thousand escalations are ten commits, not a
    # thousand. Two checks at once take the pairs in the same order, so one waits for the other's chunk and
    # then finds its rows; neither holds a row the other waits for.
    for start in range(0, len(due), WRITE_CHUNK):
        with transaction.atomic():
            for item in due[start : start + WRITE_CHUNK]:
                written = _escalate(
                    account=account,
                    item=item,
                    lacks=missing.get(item.stay.lead_id, []),
                    head=head,
                    usual=_usual(item, usual_times),
                    now=now,
                )
                if written:
                    result.escalated += 1
                else:
                    result.already += 1
    if result.no_head_of_sales:
        logger.warning(
            "account %s: %d deal(s) past a second limit, but no head of sales is chosen",
            account_id,
            result.no_head_of_sales,
        )
    return result


@dataclass
class EnforcementRun:
    check: CheckResult
    flush: FlushResult | None = None

    @property
    def flush_in(self) -> float | None:
        return self.flush.next_in if self.flush is not None else None


def escalations_enforce(
    *,
    account_id: int,
    now: dt.datetime | None = None,
    client: KommoClient | None = None,
    backlog: int = 0,
) -> EnforcementRun:
    """Check the account's limits; when that queued tasks, or tasks of an earlier check still wait (its
    worker died after the check committed), send what the outbound plan says is due (``backlog``: the
    account's webhook deliveries waiting, which the plan weighs)."""
    run = EnforcementRun(check=escalations_check(account_id=account_id, now=now))
    waiting = OutboundChange.objects.filter(
        account_id=account_id,
        kind=OutboundChange.Kind.TASK_CREATE,
        status=OutboundChange.Status.PENDING,
        idempotency_key__startswith=IDEMPOTENCY_PREFIX,
    )
    if run.check.escalated or waiting.exists():
        run.flush = outbound_changes_flush(account_id=account_id, client=client, backlog=backlog)
    return run


def account_ids_with_limits() -> list[int]:
    """The accounts with an active limit on one of their stages (and their circuit breaker closed)."""
    return sorted(
        set(
            StageLimit.objects.filter(
                is_active=True, status__account__blocked_since__isnull=True
            ).values_list("status__account_id", flat=True)
        )
    )
