"""Reads for the gates' pages: the dry run of a rule over current deals and over past moves.

A dry run applies the rule as it stands now — its conditions, exemptions and override tag — to the
mirror's stakeholders as they stand now (the portal keeps no history of stakeholders), without calling
Kommo and without writing anything.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from apps.gates import semantics
from apps.gates.models import GateRule
from apps.gates.services import stage_from_status, stakeholder_views
from apps.kommo.models import Lead, StageChange, Status
from apps.stakeholders.models import Stakeholder
from apps.stakeholders.selectors import stakeholders_for_leads


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
    embedded = lead.raw.get("_embedded") if isinstance(lead.raw, dict) else None
    tags = embedded.get("tags") if isinstance(embedded, dict) else None
    return [str(tag.get("name", "")) for tag in tags or [] if isinstance(tag, dict)]


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
    out), and which of them the rule would have blocked — judged on today's stakeholders."""
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
    people = stakeholders_for_leads(lead_ids=[change.lead_id for change, _, _ in crossing])
    rows = []
    for change, from_status, to_status in crossing:
        reason = semantics.exemption(
            exempt_user_ids=exempt,
            override_tag=rule.override_tag,
            moved_by=change.moved_by_kommo_user_id,
            updated_by=None,
            tags=_tags(change.lead),
        )
        failures = semantics.conditions_failures(
            conditions=conditions, stakeholders=stakeholder_views(people[change.lead_id])
        )
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
