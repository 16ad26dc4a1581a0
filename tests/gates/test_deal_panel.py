"""A manager's deal page shows the gates still ahead of the deal and what each still needs."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from apps.gates.selectors import gates_ahead_for_lead
from apps.stakeholders.selectors import stakeholders_for_lead
from apps.users.models import User
from tests.gates.conftest import MANAGER_ID

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager_client(client, board):
    user = User.objects.create_user("maria", password="pw", kommo_user_id=MANAGER_ID)
    user.groups.add(Group.objects.get(name="Manager"))
    client.force_login(user)
    return client


def test_the_deal_page_names_what_the_next_gate_still_needs(manager_client, board):
    board.rule("DM qualification", conditions=(("decision_maker", "present", 1),), name="A decision maker")
    board.rule("Legal review", name="The lawyer approved")
    lead = board.lead(stage="Legal review")
    board.stakeholder(lead, "lawyer", "pending", name="Chloe O'Brien")

    page = manager_client.get(reverse("stakeholders:deal_detail", args=[lead.pk])).content.decode()

    assert "Gates ahead" in page
    assert "The lawyer approved" in page
    assert "The lawyer has not approved (Chloe O&#x27;Brien: pending)" in page
    assert "A decision maker" not in page  # the deal is past DM qualification: that gate is behind it


def test_a_gate_the_deal_would_pass_says_so(manager_client, board):
    board.rule("Legal review", name="The lawyer approved")
    lead = board.lead(stage="Budget approval")
    board.stakeholder(lead, "lawyer", "approved")

    page = manager_client.get(reverse("stakeholders:deal_detail", args=[lead.pk])).content.decode()

    assert "Nothing: the deal may move on" in page


def test_closed_deals_and_pipelines_without_active_gates_show_no_gates(manager_client, board):
    board.rule("Legal review", is_active=False)
    open_deal, won = board.lead(stage="Signing"), board.lead(stage="Closed - won")
    board.rule("Signing")

    assert gates_ahead_for_lead(lead=won, stakeholders=[]) == []
    assert [gate.rule.gated_stage.name for gate in gates_ahead_for_lead(lead=open_deal, stakeholders=[])] == [
        "Signing"
    ]
    page = manager_client.get(reverse("stakeholders:deal_detail", args=[won.pk])).content.decode()
    assert "Gates ahead" not in page


def test_gates_are_listed_nearest_first(board):
    board.rule("Signing", name="second")
    board.rule("Technical validation", name="first")
    lead = board.lead(stage="DM qualification")

    gates = gates_ahead_for_lead(lead=lead, stakeholders=stakeholders_for_lead(lead=lead))

    assert [gate.rule.name for gate in gates] == ["first", "second"]
    assert all(gate.missing for gate in gates)
