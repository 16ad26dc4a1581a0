"""A B2B pipeline in the mirror, deals with stakeholders, gate rules, and a Kommo client whose HTTP is
answered by ``responses``."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import responses

from apps.gates.models import GateCondition, GateRule
from apps.kommo.client import KommoClient, RetryPolicy
from apps.kommo.models import Contact, KommoAccount, KommoUser, Lead, Pipeline, StageChange, Status
from apps.kommo.ratelimit import FileSlotStore, RateLimiter
from apps.stakeholders.models import Role, Stakeholder
from tests.factories import KommoAccountFactory, KommoUserFactory, PipelineFactory, StatusFactory

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

_ids = itertools.count(70000)


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
        status = self.stages[stage]
        return Lead.objects.create(
            account=self.account,
            kommo_id=fields.pop("kommo_id", next(_ids)),
            name=name,
            pipeline=self.pipeline,
            pipeline_kommo_id=PIPELINE_ID,
            status=status,
            status_kommo_id=status.kommo_id,
            responsible_user=self.manager,
            responsible_user_kommo_id=MANAGER_ID,
            updated_at=fields.pop("updated_at", NOW),
            **fields,
        )

    def stakeholder(
        self, lead: Lead, role_code: str, approval: str = "pending", name: str = ""
    ) -> Stakeholder:
        contact = Contact.objects.create(account=self.account, kommo_id=next(_ids), name=name or role_code)
        return Stakeholder.objects.create(
            account=self.account,
            lead=lead,
            contact=contact,
            role=Role.objects.get(code=role_code),
            approval_status=approval,
            name=name or role_code,
            source=Stakeholder.Source.CONTACT_FIELD,
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
        fields.setdefault("name", f"Gate at {gated} {next(_ids)}")
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
def api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def kommo_lead(
    lead: Lead, *, status: int | None = None, updated_at: dt.datetime = NOW, **extra: Any
) -> dict[str, Any]:
    """A lead as ``GET /api/v4/leads`` lists it."""
    data: dict[str, Any] = {
        "id": lead.kommo_id,
        "name": lead.name,
        "price": 0,
        "responsible_user_id": MANAGER_ID,
        "group_id": 0,
        "status_id": status if status is not None else lead.status_kommo_id,
        "pipeline_id": PIPELINE_ID,
        "loss_reason_id": None,
        "created_by": MANAGER_ID,
        "updated_by": extra.pop("updated_by", MANAGER_ID),
        "created_at": int((NOW - dt.timedelta(days=30)).timestamp()),
        "updated_at": int(updated_at.timestamp()),
        "closed_at": None,
        "closest_task_at": None,
        "is_deleted": False,
        "custom_fields_values": None,
        "score": None,
        "account_id": 1,
        "_embedded": {"tags": [{"id": 1, "name": tag} for tag in extra.pop("tags", [])]},
    }
    data.update(extra)
    return data


def leads_page(*leads: dict[str, Any]) -> dict[str, Any]:
    return {
        "_page": 1,
        "_links": {"self": {"href": BASE_URL + "/api/v4/leads"}},
        "_embedded": {"leads": list(leads)},
    }
