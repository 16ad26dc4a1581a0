"""Reads for the gates' pages: the dry run of a rule over current deals and over past moves.

A dry run applies the rule as it stands now — its conditions, exemptions and override tag — without
calling Kommo and without writing anything: over current deals, to their stakeholders as they stand; over
past moves, to each deal's stakeholders as they were at the move (the stakeholder history,
``stakeholder_state_as_of``), the conditions judged at that moment (an approval expired then, a touch too
old then). A deal the history does not cover yet (none of its rows) is judged on today's stakeholders.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db.models import OuterRef, QuerySet, Subquery

from apps.gates import semantics
from apps.gates.models import GateDecision, GateRule
from apps.gates.services import stage_from_status, stakeholder_views, stakeholder_views_as_of
from apps.kommo.models import Lead, StageChange, Status
from apps.kommo.models.outbound import OutboundChange
from apps.stakeholders.models import Role, Stakeholder
from apps.stakeholders.selectors import stakeholder_history, stakeholders_for_leads


@dataclass(frozen=True)
class DryRunRow:
    lead: Lead
    stage: str
    would_block: bool
    reasons: list[str]
    exempt: str | None = None
    at: dt.datetime | None = None
    transition: str = ""


@dataclass
class DryRun:
    rule: GateRule
    current: list[DryRunRow] = field(default_factory=list)
    history: list[DryRunRow] = field(default_factory=list)
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    @property
    def current_blocked(self) -> int:
        return sum(row.would_block for row in self.current)

    @property
    def history_blocked(self) -> int:
        return sum(row.would_block for row in self.history)


def _rule_parts(rule: GateRule) -> tuple[list[semantics.Condition], list[int]]:
    conditions = [condition.as_semantics() for condition in rule.conditions.select_related("role")]
    exempt = list(rule.exempt_users.values_list("kommo_id", flat=True))
    return conditions, exempt


def _tags(lead: Lead) -> list[str]:
    return list(lead.tag_names)


def gate_rule_dry_run_current(*, rule: GateRule) -> list[DryRunRow]:
    """The deals of the rule's pipeline that sit past its gated stage now (won included, lost not), and
    which of them the rule would block and why."""
    conditions, exempt = _rule_parts(rule)
    past = Status.objects.filter(pipeline=rule.pipeline, sort__gt=rule.gated_stage.sort).exclude(
        kommo_id=semantics.LOST_STATUS_ID
    )
    leads = list(
        Lead.objects.filter(account=rule.account, is_deleted=False, status__in=past)
        .select_related("status")
        .order_by("status__sort", "name", "id")
    )
    people = stakeholders_for_leads(lead_ids=[lead.pk for lead in leads])
    rows = []
    for lead in leads:
        reason = semantics.exemption(
            exempt_user_ids=exempt,
            override_tag=rule.override_tag,
            moved_by=None,
            updated_by=None,
            tags=_tags(lead),
        )
        failures = semantics.conditions_failures(
            conditions=conditions, stakeholders=stakeholder_views(people[lead.pk])
        )
        assert lead.status is not None
        rows.append(
            DryRunRow(
                lead=lead,
                stage=lead.status.name,
                would_block=bool(failures) and reason is None,
                reasons=failures,
                exempt=reason,
            )
        )
    return rows


def gate_rule_dry_run_history(*, rule: GateRule, since: dt.datetime, until: dt.datetime) -> list[DryRunRow]:
    """The moves between ``since`` and ``until`` that crossed the rule's gate (the portal's own moves left
    out), and which of them the rule would have blocked — judged on the stakeholders each deal had at the
    move, at that moment (today's for a deal the history does not cover)."""
    conditions, exempt = _rule_parts(rule)
    stages = {
        (status.pipeline.kommo_id, status.kommo_id): status
        for status in Status.objects.filter(account=rule.account).select_related("pipeline")
    }
    gated = stage_from_status(rule.gated_stage)
    changes = list(
        StageChange.objects.filter(
            account=rule.account,
            at__gte=since,
            at__lt=until,
            to_pipeline_kommo_id=rule.pipeline.kommo_id,
        )
        .exclude(source=StageChange.Source.GATE)
        .select_related("lead")
        .order_by("at", "id")
    )
    crossing = []
    for change in changes:
        to_status = stages.get((rule.pipeline.kommo_id, change.to_status_kommo_id))
        from_status = stages.get((change.from_pipeline_kommo_id or 0, change.from_status_kommo_id or 0))
        if to_status is None:
            continue
        origin = stage_from_status(from_status) if from_status is not None else None
        if semantics.gate_crossed(gated=gated, from_stage=origin, to_stage=stage_from_status(to_status)):
            crossing.append((change, from_status, to_status))
    lead_ids = [change.lead_id for change, _, _ in crossing]
    people = stakeholders_for_leads(lead_ids=lead_ids)
    history = stakeholder_history(lead_ids=lead_ids, until=until)
    roles = Role.objects.in_bulk()
    rows = []
    for change, from_status, to_status in crossing:
        reason = semantics.exemption(
            exempt_user_ids=exempt,
            override_tag=rule.override_tag,
            moved_by=change.moved_by_kommo_user_id,
            updated_by=None,
            tags=_tags(change.lead),
        )
        if history.covers(change.lead_id):
            views = stakeholder_views_as_of(history.state_at(change.lead_id, change.at), roles)
        else:
            views = stakeholder_views(people[change.lead_id])
        failures = semantics.conditions_failures(conditions=conditions, stakeholders=views, now=change.at)
        before = from_status.name if from_status is not None else "—"
        rows.append(
            DryRunRow(
                lead=change.lead,
                stage=to_status.name,
                would_block=bool(failures) and reason is None,
                reasons=failures,
                exempt=reason,
                at=change.at,
                transition=f"{before} → {to_status.name}",
            )
        )
    return rows


def gate_rule_dry_run(*, rule: GateRule, since: dt.datetime, until: dt.datetime) -> DryRun:
    return DryRun(
        rule=rule,
        current=gate_rule_dry_run_current(rule=rule),
        history=gate_rule_dry_run_history(rule=rule, since=since, until=until),
        since=since,
        until=until,
    )


@dataclass(frozen=True)
class GateAhead:
    """A gate the deal has not passed yet, and what it still needs (nothing when the deal would pass)."""

    rule: GateRule
    missing: list[str]

    @property
    def passes(self) -> bool:
        return not self.missing


def gates_ahead_for_lead(*, lead: Lead, stakeholders: Sequence[Stakeholder]) -> list[GateAhead]:
    """The active gates of the deal's pipeline at or after its stage, nearest first, judged on its
    stakeholders as they stand. A closed deal has none."""
    status = lead.status
    if status is None or lead.pipeline_id is None or status.kommo_id in semantics.CLOSED_STATUS_IDS:
        return []
    rules = (
        GateRule.objects.filter(
            account_id=lead.account_id,
            pipeline_id=lead.pipeline_id,
            is_active=True,
            gated_stage__sort__gte=status.sort,
        )
        .select_related("gated_stage")
        .prefetch_related("conditions__role")
        .order_by("gated_stage__sort", "pk")
    )
    views = stakeholder_views(stakeholders)
    return [
        GateAhead(
            rule=rule,
            missing=semantics.conditions_failures(
                conditions=[condition.as_semantics() for condition in rule.conditions.all()],
                stakeholders=views,
            ),
        )
        for rule in rules
    ]


@dataclass(frozen=True)
class MoveBack:
    """A move of the deal a gate refused: when, which rule and why, where the deal was put back, and the
    task the manager was given (its text, when it is due, whether it reached Kommo)."""

    decision: GateDecision
    to_stage: str
    task_text: str
    task_due: dt.datetime | None
    task_state: str


def _task_state(change: OutboundChange | None) -> str:
    if change is None:
        return "no task"
    if change.status == OutboundChange.Status.SENT:
        return "created in Kommo"
    if change.status == OutboundChange.Status.SKIPPED:
        return "not created: an open task for this gate was already there"
    if change.status == OutboundChange.Status.FAILED:
        return f"not created: {change.error or 'Kommo refused it'}"
    return "waiting to be sent to Kommo"


def gate_moves_back_for_lead(*, lead: Lead, limit: int = 3) -> list[MoveBack]:
    """The deal's latest moves refused by a gate (enforced ones: the deal was moved back), newest first."""
    decisions = list(
        GateDecision.objects.filter(lead=lead, outcome=GateDecision.Outcome.BLOCKED)
        .select_related("rule")
        .order_by("-decided_at", "-id")[:limit]
    )
    wanted = [
        action["outbound_change"]
        for decision in decisions
        for action in decision.actions
        if isinstance(action, dict) and action.get("action") == "task" and action.get("outbound_change")
    ]
    changes = {change.pk: change for change in OutboundChange.objects.filter(pk__in=wanted)}
    found = []
    for decision in decisions:
        actions = {action.get("action"): action for action in decision.actions if isinstance(action, dict)}
        task = actions.get("task", {})
        change = changes.get(task.get("outbound_change") or 0)
        due = (change.payload or {}).get("complete_till") if change is not None else None
        found.append(
            MoveBack(
                decision=decision,
                to_stage=str(actions.get("move back", {}).get("to_stage", "")),
                task_text=str(task.get("text", "")),
                task_due=dt.datetime.fromtimestamp(due, dt.UTC) if isinstance(due, int) else None,
                task_state=_task_state(change),
            )
        )
    return found


def _latest_outcome() -> Subquery:
    return Subquery(
        GateDecision.objects.filter(lead=OuterRef("pk"))
        .exclude(outcome__in=(GateDecision.Outcome.STALE, GateDecision.Outcome.ERROR))
        .order_by("-decided_at", "-id")
        .values("outcome")[:1]
    )


def deals_blocked_by_a_gate(deals: QuerySet[Lead]) -> QuerySet[Lead]:
    """The deals whose latest gate decision moved them back: held until their stakeholders meet the gate
    (a later allowed or exempt move clears it; dry-run rules block nothing)."""
    return deals.annotate(latest_gate_outcome=_latest_outcome()).filter(
        latest_gate_outcome=GateDecision.Outcome.BLOCKED
    )


def gate_flags_for_deals(deals: Sequence[Lead]) -> dict[int, list[str]]:
    """Per deal pk: "Moved back: <rule>" for the deals ``deals_blocked_by_a_gate`` keeps (one query)."""
    ids = [deal.pk for deal in deals]
    if not ids:
        return {}
    latest: dict[int, GateDecision] = {}
    for decision in (
        GateDecision.objects.filter(lead_id__in=ids)
        .exclude(outcome__in=(GateDecision.Outcome.STALE, GateDecision.Outcome.ERROR))
        .select_related("rule")
        .order_by("lead_id", "-decided_at", "-id")
    ):
        latest.setdefault(decision.lead_id, decision)
    return {
        lead_id: [f"Moved back: {decision.rule.name}"]
        for lead_id, decision in latest.items()
        if decision.outcome == GateDecision.Outcome.BLOCKED
    }
