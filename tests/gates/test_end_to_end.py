"""The lawyer gate end to end: the Kommo sandbox over HTTP sends its webhooks to a live portal, a real
Celery worker on Redis and PostgreSQL processes them, evaluates the gate and writes back to the sandbox."""

from __future__ import annotations

import time
from typing import Any

import pytest

from apps.gates.models import GateDecision
from apps.kommo.models import KommoAccount, Lead, StageChange
from apps.kommo.provenance import MirrorSource, Provenance
from apps.stakeholders.models import Approval, Stakeholder
from apps.stakeholders.services import StakeholderChange, stakeholder_update_in_kommo
from kommo_sandbox.server import SandboxServer
from tests.kommo.sandbox_support import GatedPortal, sandbox_api
from tests.support.marks import END_TO_END
from tests.support.services import wait_for

pytestmark = END_TO_END

LAWYER_GATE = "The lawyer approved to leave Legal review"


@pytest.fixture
def portal(gated_portal: GatedPortal) -> KommoAccount:
    """The portal connected to the sandbox, once for the module (tests/kommo/sandbox_support.py): each test
    takes a deal no earlier test decided."""
    return gated_portal.account


@pytest.fixture
def sandbox(gated_portal: GatedPortal) -> SandboxServer:
    return gated_portal.sandbox


def kommo_lead(sandbox: SandboxServer, lead_id: int) -> dict[str, Any]:
    return sandbox_api(sandbox, "GET", f"/api/v4/leads/{lead_id}")


def gate_tasks(sandbox: SandboxServer, lead_id: int) -> list[dict[str, Any]]:
    data = sandbox_api(
        sandbox, "GET", f"/api/v4/tasks?filter[entity_type]=leads&filter[entity_id][]={lead_id}"
    )
    tasks = (data or {}).get("_embedded", {}).get("tasks", [])
    return [task for task in tasks if "[portal gate " in task["text"]]


def gate_notes(sandbox: SandboxServer, lead_id: int) -> list[dict[str, Any]]:
    data = sandbox_api(sandbox, "GET", f"/api/v4/leads/{lead_id}/notes")
    notes = (data or {}).get("_embedded", {}).get("notes", [])
    return [note for note in notes if "[portal gate " in (note.get("params") or {}).get("text", "")]


def _deal_in_legal_review(account: KommoAccount, approval: str) -> Stakeholder:
    lawyer = (
        Stakeholder.objects.filter(
            account=account,
            role__code="lawyer",
            approval_status=approval,
            lead__status__name="Legal review",
            catalog_element__isnull=False,
        )
        .exclude(lead__gate_decisions__isnull=False)  # not one an earlier test of the module moved
        .select_related("lead", "role")
        .first()
    )
    assert lawyer is not None, f"the demo seed has a deal in Legal review whose lawyer is {approval}"
    return lawyer


def _approve(lawyer: Stakeholder) -> None:
    """The lawyer approves: a manager records it on the deal's stakeholder page, which writes it to
    the stakeholder's catalog element in Kommo and refreshes the mirror."""
    lawyer.refresh_from_db()
    stakeholder_update_in_kommo(
        stakeholder=lawyer,
        change=StakeholderChange(
            role=lawyer.role, approval_status=Approval.APPROVED, last_touch=lawyer.last_touch
        ),
        provenance=Provenance(MirrorSource.MANAGER),
    )
    assert Stakeholder.objects.get(pk=lawyer.pk).approval_status == Approval.APPROVED


def _block_and_check(sandbox: SandboxServer, deal: Lead, legal: int, signing: int) -> None:
    # A manager drags the card from Legal review to Signing.
    sandbox_api(sandbox, "PATCH", f"/api/v4/leads/{deal.kommo_id}", {"status_id": signing})

    wait_for(
        lambda: kommo_lead(sandbox, deal.kommo_id)["status_id"] == legal, timeout=20, message="the move back"
    )
    wait_for(lambda: gate_notes(sandbox, deal.kommo_id), timeout=10, message="the note")
    tasks = gate_tasks(sandbox, deal.kommo_id)
    assert len(tasks) == 1
    assert "lawyer has not approved" in tasks[0]["text"]
    assert tasks[0]["responsible_user_id"] == kommo_lead(sandbox, deal.kommo_id)["responsible_user_id"]
    assert "lawyer has not approved" in gate_notes(sandbox, deal.kommo_id)[0]["params"]["text"]
    decision = GateDecision.objects.get(lead=deal, rule__name=LAWYER_GATE)
    assert decision.outcome == GateDecision.Outcome.BLOCKED
    assert decision.transition == "Legal review → Signing"
    # The portal's own move came back as a webhook and was recorded as the gate's, not evaluated.
    wait_for(
        lambda: StageChange.objects.filter(lead=deal, to_status_kommo_id=legal, source="gate").exists(),
        timeout=10,
        message="the gate's move in the stage history",
    )
    assert GateDecision.objects.filter(lead=deal).count() == 1


def _stage_ids(sandbox: SandboxServer, deal: Lead) -> tuple[int, int]:
    stages = {status["name"]: status["id"] for status in _statuses(sandbox, deal.pipeline_kommo_id)}
    return stages["Legal review"], stages["Signing"]


def test_a_move_past_legal_review_without_the_lawyers_approval_is_undone(
    portal: KommoAccount, sandbox: SandboxServer
) -> None:
    deal = _deal_in_legal_review(portal, Approval.PENDING).lead
    legal, signing = _stage_ids(sandbox, deal)

    _block_and_check(sandbox, deal, legal, signing)


def test_a_move_past_legal_review_stays_when_the_lawyer_has_approved(
    portal: KommoAccount, sandbox: SandboxServer
) -> None:
    lawyer = _deal_in_legal_review(portal, Approval.PENDING)
    deal = lawyer.lead
    legal, signing = _stage_ids(sandbox, deal)
    _approve(lawyer)

    sandbox_api(sandbox, "PATCH", f"/api/v4/leads/{deal.kommo_id}", {"status_id": signing})

    allowed = wait_for(
        lambda: GateDecision.objects.filter(lead=deal).first(), timeout=20, message="the decision"
    )
    assert (allowed.outcome, allowed.rule.name) == (GateDecision.Outcome.ALLOWED, LAWYER_GATE)
    assert kommo_lead(sandbox, deal.kommo_id)["status_id"] == signing
    assert gate_tasks(sandbox, deal.kommo_id) == []
    assert legal != signing


def test_the_same_move_stays_once_the_lawyer_has_approved(
    portal: KommoAccount, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Kommo's clock stands still: the manager's move, the portal's move back and the manager's same move
    # again all fall in one second, which Kommo's whole-second times cannot tell apart (the case that
    # made this test fail now and then when only the timing decided it).
    second = int(time.time())
    monkeypatch.setattr(sandbox.store, "clock", lambda: second)
    lawyer = _deal_in_legal_review(portal, Approval.PENDING)
    deal = lawyer.lead
    legal, signing = _stage_ids(sandbox, deal)
    _block_and_check(sandbox, deal, legal, signing)
    _approve(lawyer)

    sandbox_api(sandbox, "PATCH", f"/api/v4/leads/{deal.kommo_id}", {"status_id": signing})

    allowed = wait_for(
        lambda: GateDecision.objects.filter(lead=deal, outcome=GateDecision.Outcome.ALLOWED).first(),
        timeout=20,
        message="the second decision",
    )
    assert allowed.rule.name == LAWYER_GATE
    assert kommo_lead(sandbox, deal.kommo_id)["status_id"] == signing
    assert len(gate_tasks(sandbox, deal.kommo_id)) == 1
    moves = StageChange.objects.filter(lead=deal).exclude(source="sync").order_by("at", "pk")
    assert list(moves.values_list("from_status_kommo_id", "to_status_kommo_id", "source")) == [
        (legal, signing, "webhook"),
        (signing, legal, "gate"),
        (legal, signing, "webhook"),
    ]


def _statuses(sandbox: SandboxServer, pipeline_id: int) -> list[dict[str, Any]]:
    data = sandbox_api(sandbox, "GET", f"/api/v4/leads/pipelines/{pipeline_id}")
    return data["_embedded"]["statuses"]
