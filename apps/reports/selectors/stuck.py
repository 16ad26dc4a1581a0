"""Stuck deals and why: which open deals are stuck, for which reasons, in plain words and as codes.

A deal is stuck when one or more of these hold (the codes are stable: the BI export and the deal list's
"stuck" filter read them):

- ``stage_overdue``: the deal has spent longer in its current stage than 1.5 times the usual time of that
  stage. The time in stage is cumulative: every stay of the deal in that stage counts, so a gate moving the
  deal back and forth does not restart the clock. The usual time is the median of the stage's completed
  stays that ended in the last 180 days when there are at least 20 of them, else the stage's default
  (:class:`~apps.reports.models.StageNorm`, editable in the admin), else ``REPORTS_STAGE_DEFAULT_DAYS``.
- ``stale_touch``: no stakeholder of the deal was touched in the last ``REPORTS_STALE_TOUCH_DAYS`` days (a
  deal without stakeholders, or whose stakeholders carry no touch at all, counts as untouched).
- ``no_open_task``: the deal has no open task in Kommo (its ``closest_task_at`` is empty: Kommo sets it to
  the deadline of the deal's earliest open task).
- ``gate_missing``: the gate ahead of the deal — the active rules gated at its current stage, which it must
  pass to move on — would block it now: a role absent, an approval pending or rejected. The conditions are
  evaluated by :mod:`apps.gates.semantics`, exactly as the gates evaluate a move. Gates at later stages
  are not reasons yet (a deal in technical validation is not stuck because legal review will want the
  lawyer).
- ``objection_open``: a stakeholder has an open objection (not resolved) weighing at least
  ``REPORTS_OBJECTION_WEIGHT``; the reason names it and says how long it has been open.

Everything is read in a fixed number of queries, whatever the number of deals: the deals, their stays in
their current stage (summed in SQL), the stages' usual times (aggregated in SQL), the stakeholders, and the
active gate rules.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from django.conf import settings
from django.db import connection
from django.db.models import DateTimeField, F, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from apps.gates import semantics
from apps.gates.models import GateRule
from apps.kommo.models import KommoAccount, Lead, StageStay, Status
from apps.reports.models import StageNorm
from apps.reports.sql import SecondsBetween
from apps.stakeholders.models import Stakeholder, objection_is_open
from apps.stakeholders.wording import role_in_sentence

OVERDUE_FACTOR = Decimal("1.5")
USUAL_WINDOW_DAYS = 180
USUAL_MIN_STAYS = 20
DAY = 86400.0


class Reason(StrEnum):
    STAGE_OVERDUE = "stage_overdue"
    STALE_TOUCH = "stale_touch"
    NO_OPEN_TASK = "no_open_task"
    GATE_MISSING = "gate_missing"
    OBJECTION_OPEN = "objection_open"


REASON_LABELS = {
    Reason.STAGE_OVERDUE: "in the stage far longer than usual",
    Reason.STALE_TOUCH: "no stakeholder touched recently",
    Reason.NO_OPEN_TASK: "no open task",
    Reason.GATE_MISSING: "the gate at its stage would block it",
    Reason.OBJECTION_OPEN: "an open objection",
}


@dataclass(frozen=True)
class StuckReason:
    code: Reason
    text: str


@dataclass(frozen=True)
class UsualTime:
    """The usual time in one stage: the median of its recent completed stays, or its default."""

    days: float
    stays: int  # completed stays in the window
    measured: bool  # True: the median of ``stays``; False: the stage's default


@dataclass(frozen=True)
class StuckDeal:
    lead: Lead
    days_in_stage: float | None
    usual: UsualTime | None
    reasons: tuple[StuckReason, ...]
    last_touch: dt.datetime | None = None
    stakeholders: tuple[Person, ...] = field(default=(), repr=False)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(reason.code.value for reason in self.reasons)

    @property
    def text(self) -> str:
        return " · ".join(reason.text for reason in self.reasons)

    @property
    def is_stuck(self) -> bool:
        return bool(self.reasons)


def _days(days: float) -> str:
    whole = int(days)
    return "1 day" if whole == 1 else f"{whole} days"


# -- usual times ----------------------------------------------------------------------------------------


def stage_usual_times(*, account: KommoAccount, now: dt.datetime | None = None) -> dict[int, UsualTime]:
    """The usual time of every stage of the account (local Status pk → :class:`UsualTime`): the median of
    the completed stays that left it in the last 180 days when there are at least 20, else the stage's
    :class:`StageNorm`, else ``REPORTS_STAGE_DEFAULT_DAYS``. Won and lost stages have none."""
    now = now or timezone.now()
    since = now - dt.timedelta(days=USUAL_WINDOW_DAYS)
    measured = _medians(account_id=account.pk, since=since, until=now)
    norms = dict(StageNorm.objects.filter(status__account=account).values_list("status_id", "usual_days"))
    fallback = float(settings.REPORTS_STAGE_DEFAULT_DAYS)
    usual: dict[int, UsualTime] = {}
    for status_id, kommo_id in Status.objects.filter(account=account).values_list("pk", "kommo_id"):
        if kommo_id in semantics.CLOSED_STATUS_IDS:
            continue
        count, median = measured.get(status_id, (0, None))
        if count >= USUAL_MIN_STAYS and median is not None:
            usual[status_id] = UsualTime(days=median / DAY, stays=count, measured=True)
        else:
            days = norms.get(status_id)
            usual[status_id] = UsualTime(
                days=float(days) if days is not None else fallback, stays=count, measured=False
            )
    return usual


def _medians(*, account_id: int, since: dt.datetime, until: dt.datetime) -> dict[int, tuple[int, float]]:
    """Per stage (Status pk): how many stays left it between ``since`` and ``until``, and their median
    duration in seconds. PostgreSQL computes the median itself; other databases get it in Python."""
    stays = StageStay.objects.filter(
        account_id=account_id, left_at__gte=since, left_at__lte=until, status__isnull=False
    )
    if connection.vendor == "postgresql":
        sql, params = stays.values("status_id", "entered_at", "left_at").query.sql_with_params()
        with connection.cursor() as cursor:
            # The inner query is Django's own, its values passed as parameters.
            query = (
                "SELECT s.status_id, count(*), percentile_cont(0.5) WITHIN GROUP"  # noqa: S608
                " (ORDER BY extract(epoch FROM s.left_at - s.entered_at))"
                f" FROM ({sql}) s GROUP BY s.status_id"
            )
            cursor.execute(query, params)
            return {status_id: (count, float(median)) for status_id, count, median in cursor.fetchall()}
    durations: dict[int, list[float]] = defaultdict(list)
    for status_id, entered, left in stays.values_list("status_id", "entered_at", "left_at"):
        if status_id is not None and left is not None:  # both filtered on: for the type checker
            durations[status_id].append((left - entered).total_seconds())
    return {key: (len(values), statistics.median(values)) for key, values in durations.items()}


# -- facts per deal -------------------------------------------------------------------------------------


def _time_in_current_stage(leads: QuerySet[Lead], now: dt.datetime) -> dict[int, float]:
    """Seconds each deal has spent in its current stage, over all its stays there (the open one up to
    ``now``). Deals with no stay in their current stage are left out."""
    stays = StageStay.objects.filter(lead__in=leads.values("pk"), status_id=F("lead__status_id"))
    if connection.vendor == "postgresql":
        # Summed by the database: one row per deal rather than one per stay, with its timestamps to parse.
        now_value = Value(now, output_field=DateTimeField())
        length = Greatest(SecondsBetween(Coalesce("left_at", now_value), "entered_at"), Value(0.0))
        summed = stays.order_by().values("lead_id").annotate(seconds=Sum(length))
        return {row["lead_id"]: row["seconds"] for row in summed.values("lead_id", "seconds")}
    seconds: dict[int, float] = defaultdict(float)
    rows = stays.values_list("lead_id", "entered_at", "left_at")
    for lead_id, entered, left in rows:
        seconds[lead_id] += max(((left or now) - entered).total_seconds(), 0.0)
    return seconds


@dataclass(frozen=True)
class Person:
    """What the reasons need of a stakeholder (read as plain values, not model instances)."""

    name: str
    role_id: int | None
    role: str  # the role's label inside a sentence ("lawyer"), empty without a role
    approval: str
    last_touch: dt.datetime | None
    objection_weight: Decimal | None
    objection: str = ""
    objection_raised_at: dt.datetime | None = None
    objection_resolved_at: dt.datetime | None = None
    approval_decided_at: dt.datetime | None = None
    approval_valid_days: int | None = None

    @property
    def objection_open(self) -> bool:
        return objection_is_open(
            text=self.objection, weight=self.objection_weight, resolved_at=self.objection_resolved_at
        )

    def view(self) -> semantics.StakeholderView:
        return semantics.StakeholderView(
            name=self.name,
            role_id=self.role_id,
            role_label=self.role,
            approval=self.approval,
            approval_decided_at=self.approval_decided_at,
            approval_valid_days=self.approval_valid_days,
            last_touch=self.last_touch,
            objection_open=self.objection_open,
            objection=self.objection,
            objection_weight=self.objection_weight,
            objection_raised_at=self.objection_raised_at,
        )


def _people(leads: QuerySet[Lead]) -> dict[int, list[Person]]:
    found: dict[int, list[Person]] = defaultdict(list)
    rows = (
        Stakeholder.objects.filter(lead__in=leads.values("pk"))
        .order_by("lead_id", "role__sort", "name", "id")
        .values_list(
            "lead_id", "name", "role_id", "role__label", "approval_status", "last_touch", "objection_weight",
            "objection", "objection_raised_at", "objection_resolved_at", "approval_decided_at",
            "role__approval_valid_days",
        )
    )  # fmt: skip
    for (
        lead_id,
        name,
        role_id,
        label,
        approval,
        touched,
        weight,
        text,
        raised,
        resolved,
        decided,
        days,
    ) in rows:
        found[lead_id].append(
            Person(
                name, role_id, role_in_sentence(label or ""), approval, touched, weight,
                objection=text, objection_raised_at=raised, objection_resolved_at=resolved,
                approval_decided_at=decided, approval_valid_days=days,
            )
        )  # fmt: skip
    return found


def _gates_at_stages(account: KommoAccount) -> dict[int, tuple[semantics.Condition, ...]]:
    """The conditions of the account's active gate rules, per gated stage (local Status pk): what a deal in
    that stage must satisfy to move on."""
    rules = (
        GateRule.objects.filter(account=account, is_active=True)
        .prefetch_related("conditions__role")
        .order_by("gated_stage_id", "pk")
    )
    gates: dict[int, list[semantics.Condition]] = defaultdict(list)
    for rule in rules:
        for condition in rule.conditions.all():
            gates[rule.gated_stage_id].append(condition.as_semantics())
    return {stage_id: tuple(conditions) for stage_id, conditions in gates.items()}


def _open_leads(account: KommoAccount, leads_qs: QuerySet[Lead] | None) -> QuerySet[Lead]:
    leads = leads_qs if leads_qs is not None else Lead.objects.all()
    return leads.filter(account=account, is_deleted=False, status__isnull=False).exclude(
        status_kommo_id__in=semantics.CLOSED_STATUS_IDS
    )


@dataclass(frozen=True)
class Thresholds:
    stale_touch_days: int
    objection_weight: Decimal

    @classmethod
    def from_settings(cls) -> Thresholds:
        return cls(
            stale_touch_days=int(settings.REPORTS_STALE_TOUCH_DAYS),
            objection_weight=Decimal(str(settings.REPORTS_OBJECTION_WEIGHT)),
        )


def _evaluate(
    *, account: KommoAccount, leads_qs: QuerySet[Lead] | None, now: dt.datetime | None
) -> list[StuckDeal]:
    now = now or timezone.now()
    limits = Thresholds.from_settings()
    leads = _open_leads(account, leads_qs)
    rows = list(
        leads.select_related("status", "pipeline", "responsible_user")
        .defer("raw")
        .annotate(open_task_at=F("raw__closest_task_at"))
        .order_by("-price", "pk")
    )
    if not rows:
        return []
    usual = stage_usual_times(account=account, now=now)
    in_stage = _time_in_current_stage(leads, now)
    people = _people(leads)
    gates = _gates_at_stages(account)
    stale_before = now - dt.timedelta(days=limits.stale_touch_days)
    found = []
    for lead in rows:
        assert lead.status is not None
        stakeholders = people.get(lead.pk, [])
        reasons: list[StuckReason] = []
        seconds = in_stage.get(lead.pk)
        stage_usual = usual.get(lead.status.pk)
        days = seconds / DAY if seconds is not None else None
        if days is not None and stage_usual is not None and days > stage_usual.days * float(OVERDUE_FACTOR):
            reasons.append(
                StuckReason(
                    Reason.STAGE_OVERDUE,
                    f"{lead.status.name} for {_days(days)} (usual {_days(max(stage_usual.days, 1))})"
                    if stage_usual.days >= 1
                    else f"{lead.status.name} for {_days(days)} (usual under a day)",
                )
            )
        touches = [person.last_touch for person in stakeholders if person.last_touch is not None]
        last_touch = max(touches) if touches else None
        if last_touch is None or last_touch < stale_before:
            if not stakeholders:
                text = "no stakeholder identified"
            elif last_touch is None:
                text = "no stakeholder ever touched"
            else:
                text = f"no stakeholder touched for {_days((now - last_touch).total_seconds() / DAY)}"
            reasons.append(StuckReason(Reason.STALE_TOUCH, text))
        if getattr(lead, "open_task_at", None) in (None, ""):
            reasons.append(StuckReason(Reason.NO_OPEN_TASK, "no open task"))
        conditions = gates.get(lead.status.pk)
        if conditions:
            failures = semantics.conditions_failures(
                conditions=conditions, stakeholders=[person.view() for person in stakeholders], now=now
            )
            reasons.extend(StuckReason(Reason.GATE_MISSING, failure) for failure in failures)
        for person in stakeholders:
            weight = person.objection_weight
            if person.objection_open and weight is not None and weight >= limits.objection_weight:
                who = person.role or "stakeholder"
                name = f" {person.name}" if person.name else ""
                raised = person.objection_raised_at
                age = f" for {_days((now - raised).total_seconds() / DAY)}" if raised is not None else ""
                what = f" “{person.objection}”" if person.objection else ""
                reasons.append(
                    StuckReason(
                        Reason.OBJECTION_OPEN,
                        f"{who}{name}: objection{what} open{age}, weight {weight.normalize()}",
                    )
                )
        found.append(
            StuckDeal(
                lead=lead,
                days_in_stage=days,
                usual=stage_usual,
                reasons=tuple(reasons),
                last_touch=last_touch,
                stakeholders=tuple(stakeholders),
            )
        )
    return found


def stuck_deals(
    *, account: KommoAccount, leads_qs: QuerySet[Lead] | None = None, now: dt.datetime | None = None
) -> list[StuckDeal]:
    """The stuck open deals of ``account`` (among ``leads_qs`` when given), highest value first, each with
    its reasons in words and as codes."""
    return [deal for deal in _evaluate(account=account, leads_qs=leads_qs, now=now) if deal.is_stuck]


def stuck_reason_codes(
    *, account: KommoAccount, leads_qs: QuerySet[Lead] | None = None, now: dt.datetime | None = None
) -> dict[int, tuple[str, ...]]:
    """Local Lead pk → reason codes, for the stuck open deals among ``leads_qs``: what a list's "stuck"
    filter (``leads_qs.filter(pk__in=...)``) or an export column needs."""
    return {deal.lead.pk: deal.codes for deal in stuck_deals(account=account, leads_qs=leads_qs, now=now)}


def reason_counts(deals: Iterable[StuckDeal]) -> dict[Reason, int]:
    counts = dict.fromkeys(Reason, 0)
    for deal in deals:
        for code in {reason.code for reason in deal.reasons}:
            counts[code] += 1
    return counts


__all__ = [
    "REASON_LABELS",
    "Reason",
    "StuckDeal",
    "StuckReason",
    "UsualTime",
    "reason_counts",
    "stage_usual_times",
    "stuck_deals",
    "stuck_reason_codes",
]
