"""What the gates add to the managers' pages: why a deal was moved back (the decision, the task, when),
the portal's own move shown as the portal's, and the deal list's "Moved back by a gate" filter."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from apps.gates.models import GateDecision, GateRule
from apps.kommo.models import StageChange
from apps.kommo.models.outbound import OutboundChange
from apps.users.models import User
from tests.gates.conftest import MANAGER_ID, NOW

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager_client(client, board):
    user = User.objects.create_user("maria", password="pw", kommo_user_id=MANAGER_ID)
    user.groups.add(Group.objects.get(name="Manager"))
    client.force_login(user)
    return client


def decide(board, lead, rule: GateRule, outcome: str, *, task_sent: bool = True) -> GateDecision:
    change = board.move(lead, "Signing", origin="Legal review")
    task = OutboundChange.objects.create(
        account=board.account,
        kind=OutboundChange.Kind.TASK_CREATE,
        entity_kommo_id=lead.kommo_id,
        payload={
            "text": "Get the lawyer's approval",
            "complete_till": int((NOW + dt.timedelta(hours=24)).timestamp()),
        },
        idempotency_key=f"gate:{rule.pk}:{change.pk}:task",
        status=OutboundChange.Status.SENT if task_sent else OutboundChange.Status.PENDING,
    )
    actions = (
        [
            {"action": "move back", "to_stage": "Legal review", "status_id": 4004},
            {"action": "task", "text": "Get the lawyer's approval", "outbound_change": task.pk},
        ]
        if outcome == GateDecision.Outcome.BLOCKED
        else []
    )
    return GateDecision.objects.create(
        account=board.account,
        rule=rule,
        rule_version=rule.version,
        mode=rule.mode,
        lead=lead,
        stage_change=change,
        from_status_kommo_id=4004,
        to_status_kommo_id=4005,
        transition="Legal review → Signing",
        outcome=outcome,
        reasons=["the Lawyer has not approved (Chloe: pending)"] if outcome == "blocked" else [],
        actions=actions,
    )


def test_the_deal_page_says_why_the_deal_was_moved_back_with_the_task_and_when(manager_client, board):
    rule = board.rule("Legal review", name="The lawyer approved")
    lead = board.lead(stage="Legal review")
    decide(board, lead, rule, GateDecision.Outcome.BLOCKED)

    page = manager_client.get(reverse("stakeholders:deal_detail", args=[lead.pk])).content.decode()

    assert "Why the deal was moved back" in page
    assert "the move Legal review → Signing" in page and "“The lawyer approved”" in page
    assert "moved the deal back to <strong>Legal review</strong>" in page
    assert "The Lawyer has not approved (Chloe: pending)" in page
    assert (
        "Task for the manager, due 2025-05-02 12:00 (created in Kommo): “Get the lawyer&#x27;s approval”"
        in page
    )


def test_a_deal_never_moved_back_has_no_such_section(manager_client, board):
    rule = board.rule("Legal review", name="The lawyer approved")
    lead = board.lead(stage="Signing")
    decide(board, lead, rule, GateDecision.Outcome.ALLOWED)

    page = manager_client.get(reverse("stakeholders:deal_detail", args=[lead.pk])).content.decode()

    assert "Why the deal was moved back" not in page


def test_the_portals_own_move_back_is_shown_as_the_portals_not_as_the_token_user(manager_client, board):
    lead = board.lead(stage="Signing")
    back = board.move(
        lead, "Legal review", source=StageChange.Source.GATE, moved_by=board.head_of_sales.kommo_id
    )
    StageChange.objects.filter(pk=back.pk).update(sources=["gate", "webhook"], moved_by=board.head_of_sales)

    page = manager_client.get(reverse("stakeholders:deal_detail", args=[lead.pk]))

    assert back.pk in {change.pk for change in page.context["history"]}
    html = page.content.decode()
    assert "The portal (gate)" in html
    assert html.count(board.head_of_sales.name) == 0


def test_the_deal_list_filters_the_deals_a_gate_moved_back_and_flags_them(manager_client, board):
    rule = board.rule("Legal review", name="The lawyer approved")
    held = board.lead("Held deal", stage="Legal review")
    decide(board, held, rule, GateDecision.Outcome.BLOCKED)
    released = board.lead("Released deal", stage="Signing")
    decide(board, released, rule, GateDecision.Outcome.BLOCKED)
    decide(board, released, rule, GateDecision.Outcome.ALLOWED)
    board.lead("Untouched deal", stage="Budget approval")

    everything = manager_client.get(reverse("stakeholders:deal_list"))
    filtered = manager_client.get(reverse("stakeholders:deal_list"), {"blocked": "on"})

    assert {row.deal.name for row in everything.context["rows"]} == {
        "Held deal",
        "Released deal",
        "Untouched deal",
    }
    assert [row.deal.name for row in filtered.context["rows"]] == ["Held deal"]
    flags = {row.deal.name: row.flags for row in everything.context["rows"]}
    assert "Moved back: The lawyer approved" in flags["Held deal"]
    assert not any(flag.startswith("Moved back") for flag in flags["Released deal"] + flags["Untouched deal"])
    assert "Moved back by a gate" in everything.content.decode()
