"""A B2B pipeline in the mirror, deals with stakeholders, gate rules, and a Kommo client answered by the
suite's fake Kommo (tests/support/fake_kommo.py).

``Board`` builds the mirror's world of a test: the account, pipeline, stages, users, deals, contacts and
stakeholders through tests/factories.py; a recorded move (``move``: its from-stage read off the deal, the deal
moved with it) and a gate rule with its conditions (``rule``) are the Board's own builders, since they are
the gates' vocabulary. What Kommo holds is the fake's: ``in_kommo`` puts a mirror deal there as Kommo lists
it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import responses

from apps.gates.models import GateCondition, GateRule
from apps.kommo.client import KommoClient, RetryPolicy
from apps.kommo.models import KommoAccount, KommoUser, Lead, Pipeline, StageChange, Status
from apps.kommo.ratelimit import FileSlotStore, RateLimiter
from apps.stakeholders.models import Role, Stakeholder
from tests.factories import (
    KommoAccountFactory,
    KommoUserFactory,
    LeadFactory,
    PipelineFactory,
    StakeholderFactory,
    StatusFactory,
)
from tests.support.fake_kommo import FakeKommo, lead_payload

BASE_URL = "https://acme.kommo.com"
PIPELINE_ID = 3001
STAGES = (
    ("Incoming", 4000, 10, 1),
    ("DM qualification", 4001, 20, 0),
    ("Technical validation", 4002, 30, 0),
    ("Budget approval", 4003, 40, 0),
    ("Legal review", 4004, 50, 0),
    ("Signing", 4005, 60, 0),
    ("Closed - won", 142, 10000, 0),
    ("Closed - lost", 143, 11000, 0),
)

MANAGER_ID = 501
HEAD_OF_SALES_ID = 502
NOW = dt.datetime(2025, 5, 1, 12, 0, tzinfo=dt.UTC)


@dataclass
class Board:
    account: KommoAccount
    pipeline: Pipeline
    stages: dict[str, Status]
    manager: KommoUser
    head_of_sales: KommoUser

    def stage(self, name: str) -> Status:
        return self.stages[name]

    def lead(self, name: str = "Acme deal", stage: str = "Legal review", **fields: Any) -> Lead:
        fields.setdefault("updated_at", NOW)
        return LeadFactory(
            status=self.stages[stage],
            name=name,
            responsible_user=self.manager,
            responsible_user_kommo_id=MANAGER_ID,
            **fields,
        )

    def stakeholder(
        self, lead: Lead, role_code: str, approval: str = "pending", name: str = ""
    ) -> Stakeholder:
        return StakeholderFactory(
            lead=lead,
            contact__name=name or role_code,
            role_code=role_code,
            approval_status=approval,
        )

    def move(
        self,
        lead: Lead,
        to: str,
        *,
        source: str = StageChange.Source.WEBHOOK,
        at: dt.datetime = NOW,
        moved_by: int | None = MANAGER_ID,
        origin: str | None = None,
    ) -> StageChange:
        """A recorded move of ``lead`` (from its current stage unless ``origin`` says otherwise)."""
        before = self.stages[origin] if origin else lead.status
        after = self.stages[to]
        change = StageChange.objects.create(
            account=self.account,
            lead=lead,
            from_status_kommo_id=before.kommo_id if before else None,
            from_pipeline_kommo_id=PIPELINE_ID if before else None,
            from_status=before,
            to_status_kommo_id=after.kommo_id,
            to_pipeline_kommo_id=PIPELINE_ID,
            to_status=after,
            at=at,
            source=source,
            sources=[source],
            moved_by_kommo_user_id=moved_by,
        )
        Lead.objects.filter(pk=lead.pk).update(status=after, status_kommo_id=after.kommo_id)
        lead.refresh_from_db()
        return change

    def rule(
        self,
        gated: str = "Legal review",
        *,
        conditions: tuple[tuple[str, str, int], ...] = (("lawyer", "approved", 1),),
        **fields: Any,
    ) -> GateRule:
        fields.setdefault("name", f"Gate at {gated} {GateRule.objects.count() + 1}")
        fields.setdefault("mode", GateRule.Mode.ENFORCE)
        rule = GateRule.objects.create(
            account=self.account, pipeline=self.pipeline, gated_stage=self.stages[gated], **fields
        )
        for code, requirement, n in conditions:
            GateCondition.objects.create(
                rule=rule, role=Role.objects.get(code=code), requirement=requirement, n=n
            )
        return rule


@pytest.fixture
def board(db: None) -> Board:
    account = KommoAccountFactory(
        name="Acme",
        base_url=BASE_URL,
        connected=True,
    )
    pipeline = PipelineFactory(account=account, kommo_id=PIPELINE_ID, name="B2B sales")
    stages = {
        name: StatusFactory(
            account=account,
            pipeline=pipeline,
            kommo_id=kommo_id,
            name=name,
            sort=sort,
            type=kind,
            is_won=kommo_id == 142,
            is_lost=kommo_id == 143,
        )
        for name, kommo_id, sort, kind in STAGES
    }
    manager = KommoUserFactory(account=account, kommo_id=MANAGER_ID, name="Chris Novak")
    head = KommoUserFactory(account=account, kommo_id=HEAD_OF_SALES_ID, name="Dana Whitfield")
    return Board(account, pipeline, stages, manager, head)


def legal_review_to_signing(board: Board, lead: Lead) -> dict[str, Any]:
    """``lead``'s move from Legal review to Signing at ``NOW``, as ``stage_change_record`` takes it (the
    caller adds the source, the follow-up and any event id)."""
    return {
        "account": board.account,
        "lead": lead,
        "from_status_id": board.stage("Legal review").kommo_id,
        "to_status_id": board.stage("Signing").kommo_id,
        "at": NOW,
    }


@pytest.fixture
def kommo_client(board: Board, tmp_path: Path) -> KommoClient:
    limiter = RateLimiter(FileSlotStore(tmp_path / "ratelimit"))
    return KommoClient(
        board.account, limiter=limiter, sleep=lambda _: None, retry=RetryPolicy(max_attempts=2)
    )


@pytest.fixture
def kommo(board: Board) -> Iterator[FakeKommo]:
    """The board's account in the fake Kommo; a call it has no answer for fails the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake = FakeKommo(mock, board.account.api_root)
        yield fake
        assert not fake.unrouted, f"calls the fake Kommo has no answer for: {fake.unrouted}"


def kommo_lead(
    lead: Lead,
    *,
    status: int | None = None,
    updated_at: dt.datetime = NOW,
    updated_by: int = MANAGER_ID,
    tags: tuple[str, ...] | list[str] = (),
    **extra: Any,
) -> dict[str, Any]:
    """The mirror's ``lead`` as ``GET /api/v4/leads`` lists it, in ``status`` (its own unless given)."""
    return lead_payload(
        lead.kommo_id,
        status if status is not None else lead.status_kommo_id,
        PIPELINE_ID,
        name=lead.name,
        updated_at=int(updated_at.timestamp()),
        responsible_user_id=MANAGER_ID,
        updated_by=updated_by,
        tags=tags,
        price=0,
        created_at=int((NOW - dt.timedelta(days=30)).timestamp()),
        account_id=1,
        **extra,
    )


def in_kommo(kommo: FakeKommo, lead: Lead, **fields: Any) -> dict[str, Any]:
    """Kommo holds ``lead`` as :func:`kommo_lead` gives it (``status``, ``updated_at``, ``tags`` …)."""
    kommo.leads[lead.kommo_id] = kommo_lead(lead, **fields)
    return kommo.leads[lead.kommo_id]
