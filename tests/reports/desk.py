"""A B2B pipeline in the mirror with deals whose stage stays, stakeholders and gate decisions are written
directly, so that each report definition is checked on a history with a known answer.

Used by the stuck-deals, coverage and gates report tests (``desk`` fixture: import it into the module)."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.db import models

from apps.gates.models import GateCondition, GateDecision, GateRule
from apps.kommo.models import Contact, KommoAccount, KommoUser, Lead, Pipeline, StageStay, Status
from apps.stakeholders.models import Role, Stakeholder
from tests.factories import KommoAccountFactory, KommoUserFactory, PipelineFactory, StatusFactory

PIPELINE_ID = 3001
STAGES = (
    ("DM qualification", 4001, 20),
    ("Technical validation", 4002, 30),
    ("Budget approval", 4003, 40),
    ("Legal review", 4004, 50),
    ("Signing", 4005, 60),
    ("Closed - won", 142, 10000),
    ("Closed - lost", 143, 11000),
)

NOW = dt.datetime(2025, 5, 1, 12, 0, tzinfo=dt.UTC)
MANAGERS = {"chris": (501, "Chris Novak"), "maria": (502, "Maria Lopez")}

_ids = itertools.count(90000)


def days_ago(days: float) -> dt.datetime:
    return NOW - dt.timedelta(days=days)


@dataclass
class Desk:
    account: KommoAccount
    pipeline: Pipeline
    stages: dict[str, Status]
    managers: dict[str, KommoUser]

    def deal(
        self,
        name: str = "Acme deal",
        *,
        stage: str = "Technical validation",
        price: int = 10_000,
        manager: str = "chris",
        open_task: bool = True,
        entered_days_ago: float | None = 1,
        **fields: Any,
    ) -> Lead:
        """An open deal in ``stage`` since ``entered_days_ago`` (one open stay; None: no stay), with an
        open task unless ``open_task`` is False."""
        status = self.stages[stage]
        user = self.managers[manager]
        raw = {"closest_task_at": int(NOW.timestamp()) + 86400 if open_task else None}
        lead = Lead.objects.create(
            account=self.account,
            kommo_id=next(_ids),
            name=name,
            price=price,
            pipeline=self.pipeline,
            pipeline_kommo_id=PIPELINE_ID,
            status=status,
            status_kommo_id=status.kommo_id,
            responsible_user=user,
            responsible_user_kommo_id=user.kommo_id,
            created_at=fields.pop("created_at", days_ago(400)),
            updated_at=NOW,
            raw=raw,
            **fields,
        )
        if entered_days_ago is not None:
            self.stay(lead, stage, entered=days_ago(entered_days_ago))
        return lead

    def stay(
        self, lead: Lead, stage: str, *, entered: dt.datetime, left: dt.datetime | None = None
    ) -> StageStay:
        status = self.stages[stage]
        return StageStay.objects.create(
            account=self.account,
            lead=lead,
            pipeline=self.pipeline,
            pipeline_kommo_id=PIPELINE_ID,
            status=status,
            status_kommo_id=status.kommo_id,
            entered_at=entered,
            left_at=left,
        )

    def completed_stays(self, stage: str, durations_days: list[float], *, left_days_ago: float = 10) -> None:
        """Completed stays of other (closed) deals in ``stage``, each of the given length, ending
        ``left_days_ago``."""
        for days in durations_days:
            lead = self.deal(f"closed {next(_ids)}", stage="Closed - won", entered_days_ago=None)
            left = days_ago(left_days_ago)
            self.stay(lead, stage, entered=left - dt.timedelta(days=days), left=left)

    def stakeholder(
        self,
        lead: Lead,
        role: str,
        *,
        name: str = "",
        approval: str = "pending",
        touched_days_ago: float | None = 1,
        objection: str | None = None,
        contact_created: dt.datetime | None = None,
    ) -> Stakeholder:
        contact = Contact.objects.create(
            account=self.account, kommo_id=next(_ids), name=name or role, created_at=contact_created
        )
        return Stakeholder.objects.create(
            account=self.account,
            lead=lead,
            contact=contact,
            role=Role.objects.get(code=role),
            approval_status=approval,
            name=name or role,
            last_touch=days_ago(touched_days_ago) if touched_days_ago is not None else None,
            objection_weight=Decimal(objection) if objection is not None else None,
            source=Stakeholder.Source.CONTACT_FIELD,
        )

    def rule(
        self,
        gated: str = "Legal review",
        conditions: tuple[tuple[str, str], ...] = (("lawyer", "approved"),),
        *,
        name: str | None = None,
        **fields: Any,
    ) -> GateRule:
        rule = GateRule.objects.create(
            account=self.account,
            name=name or f"{gated} gate {next(_ids)}",
            pipeline=self.pipeline,
            gated_stage=self.stages[gated],
            mode=fields.pop("mode", GateRule.Mode.ENFORCE),
            **fields,
        )
        for role, requirement in conditions:
            GateCondition.objects.create(rule=rule, role=Role.objects.get(code=role), requirement=requirement)
        return rule

    def decision(
        self, rule: GateRule, lead: Lead, outcome: str, at: dt.datetime, reasons: list[str] | None = None
    ) -> GateDecision:
        decision = GateDecision.objects.create(
            account=self.account,
            rule=rule,
            rule_version=rule.version,
            mode=rule.mode,
            lead=lead,
            from_status_kommo_id=4004,
            to_status_kommo_id=4005,
            transition="Legal review → Signing",
            outcome=outcome,
            reasons=reasons or [],
        )
        # decided_at is set on creation and decisions refuse updates: the test history needs its own time.
        models.QuerySet.update(GateDecision.objects.filter(pk=decision.pk), decided_at=at)
        decision.decided_at = at
        return decision


def make_desk(name: str = "Acme", kommo_id: int | None = None) -> Desk:
    account = KommoAccountFactory(
        name=name,
        kommo_id=kommo_id,
        base_url=f"https://{name.lower()}.kommo.com",
        connected=True,
    )
    pipeline = PipelineFactory(account=account, kommo_id=PIPELINE_ID, name="B2B sales")
    stages = {
        stage: StatusFactory(
            account=account,
            pipeline=pipeline,
            kommo_id=kommo_id,
            name=stage,
            sort=sort,
            is_won=kommo_id == 142,
            is_lost=kommo_id == 143,
        )
        for stage, kommo_id, sort in STAGES
    }
    managers = {
        key: KommoUserFactory(account=account, kommo_id=user_id, name=user_name)
        for key, (user_id, user_name) in MANAGERS.items()
    }
    return Desk(account, pipeline, stages, managers)


@pytest.fixture
def desk(db: None) -> Desk:
    return make_desk()
