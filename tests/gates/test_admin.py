"""The gates in the admin: rules with conditions, the dry-run page, the read-only logs, the deal page."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.gates.models import GateDecision, GateRule
from apps.kommo.models import OutboundChange, StageChange
from apps.stakeholders.models import Role


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(user)
    return client


def blocked(board, rule, lead, **fields) -> GateDecision:
    """A decision of version 1 of ``rule`` that blocked ``lead``'s move from Legal review to Signing."""
    return GateDecision.objects.create(
        account=board.account,
        rule=rule,
        rule_version=1,
        mode=rule.mode,
        lead=lead,
        transition="Legal review → Signing",
        outcome="blocked",
        **fields,
    )


def test_a_rule_is_edited_with_its_conditions_and_each_save_is_a_new_version(board, staff):
    rule = board.rule("Legal review")
    condition = rule.conditions.get()
    url = reverse("admin:gates_gaterule_change", args=[rule.pk])
    page = staff.get(url).content.decode()
    # The settings past what the rule gates are tabs, so its conditions come on the first screen; a
    # condition's row is not titled again by the condition's text.
    for tab in ("when-it-blocks", "who-passes-anyway", "history"):
        assert f"activeFieldsetTab = '{tab}'" in page
    assert str(condition) not in page
    form = {
        "account": board.account.pk,
        "name": rule.name,
        "pipeline": board.pipeline.pk,
        "gated_stage": board.stage("Legal review").pk,
        "mode": "enforce",
        "is_active": "on",
        "move_back_stage": "",
        "task_template": rule.task_template,
        "task_due_hours": 24,
        "override_tag": "",
        "conditions-TOTAL_FORMS": 2,
        "conditions-INITIAL_FORMS": 1,
        "conditions-0-id": condition.pk,
        "conditions-0-rule": rule.pk,
        "conditions-0-role": condition.role_id,
        "conditions-0-requirement": "approved",
        "conditions-0-n": 1,
        "conditions-1-rule": rule.pk,
        "conditions-1-role": Role.objects.get(code="blocker").pk,
        "conditions-1-requirement": "not_blocking",
        "conditions-1-n": 1,
    }
    response = staff.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    rule.refresh_from_db()
    assert rule.conditions.count() == 2
    assert rule.version == 2


def test_the_admin_refuses_a_rule_gating_won(board, staff):
    response = staff.post(
        reverse("admin:gates_gaterule_add"),
        {
            "account": board.account.pk,
            "name": "Bad",
            "pipeline": board.pipeline.pk,
            "gated_stage": board.stage("Closed - won").pk,
            "mode": "enforce",
            "task_template": "{deal}",
            "task_due_hours": 24,
            "conditions-TOTAL_FORMS": 0,
            "conditions-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 200
    assert "final" in response.content.decode()
    assert not GateRule.objects.filter(name="Bad").exists()


def test_the_dry_run_action_shows_which_deals_would_be_blocked(board, staff):
    rule = board.rule("Legal review", mode=GateRule.Mode.DRY_RUN)
    lead = board.lead("Pending lawyer", "Signing")
    board.stakeholder(lead, "lawyer", "pending", name="Lena")
    changelist = reverse("admin:gates_gaterule_changelist")
    response = staff.post(changelist, {"action": "dry_run", "_selected_action": [rule.pk]})
    assert response.status_code == 302
    page = staff.get(response["Location"]).content.decode()
    assert "Pending lawyer" in page
    assert "the lawyer has not approved (Lena: pending)" in page
    assert "1 of 1 would be blocked" in page


def test_decisions_and_outbound_changes_are_read_only(board, staff):
    rule = board.rule()
    lead = board.lead()
    made = blocked(board, rule, lead, to_status_kommo_id=4005, reasons=["the Lawyer has not approved"])
    assert staff.get(reverse("admin:gates_gatedecision_changelist") + "?outcome=blocked").status_code == 200
    page = staff.get(reverse("admin:gates_gatedecision_change", args=[made.pk])).content.decode()
    assert "the Lawyer has not approved" in page
    assert 'name="_save"' not in page
    assert staff.get(reverse("admin:kommo_outboundchange_changelist")).status_code == 200


def test_failed_outbound_changes_can_be_retried(board, staff):
    failed = OutboundChange.objects.create(
        account=board.account,
        kind=OutboundChange.Kind.NOTE_CREATE,
        entity_kommo_id=1,
        payload={"text": "x", "marker": "x"},
        idempotency_key="k1",
        status=OutboundChange.Status.FAILED,
        attempts=3,
    )
    with mock.patch("apps.kommo.tasks.outbound_drain.delay") as drain:
        staff.post(
            reverse("admin:kommo_outboundchange_changelist"),
            {"action": "retry", "_selected_action": [failed.pk]},
        )
    failed.refresh_from_db()
    assert failed.status == OutboundChange.Status.PENDING and failed.attempts == 0
    drain.assert_called_once_with(board.account.pk)


def test_the_deal_page_shows_stakeholders_stage_history_and_decisions(board, staff):
    rule = board.rule()
    lead = board.lead("Northwind renewal")
    board.stakeholder(lead, "lawyer", "pending", name="Lena Law")
    change = board.move(lead, "Signing")
    StageChange.objects.filter(pk=change.pk).update(sources=["webhook", "events"])
    blocked(
        board,
        rule,
        lead,
        stage_change=change,
        to_status_kommo_id=4005,
        reasons=["The Lawyer has not approved (Lena Law: pending)"],
    )
    lead.raw = {"id": lead.kommo_id, "custom_fields_values": None}
    lead.save(update_fields=["raw"])
    page = staff.get(reverse("admin:kommo_lead_change", args=[lead.pk])).content.decode()
    assert "Lena Law" in page
    assert "Legal review → Signing" in page
    assert "Blocked" in page
    # Stakeholders first, then the gate decisions, then the stage history; the Kommo ids and the payload
    # folded at the bottom, after every section.
    positions = [
        page.index(text)
        for text in ("Stakeholders", "Gate decisions", "Stage history", "Kommo ids and sync", "raw-payload")
    ]
    assert positions == sorted(positions)
    assert '<details class="border' in page and "&quot;custom_fields_values&quot;: null" in page
    assert "↔" not in page
    # The reasons and who reported a move in words, not as stored JSON lists.
    assert "The Lawyer has not approved (Lena Law: pending)" in page
    assert "[&quot;The Lawyer" not in page and "&quot;webhook&quot;" not in page
    assert "Webhook, Events" in page


def test_a_gate_decision_page_names_the_stages_and_gives_the_reasons_in_words(board, staff):
    rule = board.rule()
    lead = board.lead("Northwind renewal")
    change = board.move(lead, "Signing")
    decision = blocked(
        board,
        rule,
        lead,
        stage_change=change,
        from_status_kommo_id=change.from_status_kommo_id,
        to_status_kommo_id=change.to_status_kommo_id,
        reasons=["The Lawyer has not approved (Lena Law: pending)"],
        actions=[{"action": "task", "text": "word " * 80}],
    )

    page = staff.get(reverse("admin:gates_gatedecision_change", args=[decision.pk])).content.decode()

    # Titled by what was decided, not by the rule's row id; the move named by its stages.
    assert "Blocked: Legal review → Signing (rule version 1)" in page
    assert f"{rule.pk} v1" not in page
    assert "Legal review → Signing at " in page
    assert "The Lawyer has not approved (Lena Law: pending)" in page and "[&quot;The Lawyer" not in page
    # The stage ids are kept, folded under "Kommo ids" after everything else.
    assert (
        page.index("The Lawyer has not approved")
        < page.index("Kommo ids")
        < page.index(str(change.to_status_kommo_id))
    )
    # A long line of what the portal did wraps instead of widening the page.
    assert "white-space: pre-wrap" in page


def test_the_deal_page_costs_the_same_queries_however_many_stakeholders_and_decisions(board, staff):
    def page_queries(stakeholders: int, decisions: int) -> int:
        lead = board.lead()
        for number in range(stakeholders):
            board.stakeholder(lead, "lawyer", "pending", name=f"Lawyer {number}")
        for _ in range(decisions):
            blocked(board, board.rule(), lead, to_status_kommo_id=4005)  # enforced, as the board's rules
        with CaptureQueriesContext(connection) as queries:
            response = staff.get(reverse("admin:kommo_lead_change", args=[lead.pk]))
        assert response.status_code == 200
        return len(queries)

    page_queries(stakeholders=0, decisions=0)  # the per-process caches (content types) filled
    one = page_queries(stakeholders=1, decisions=1)
    three = page_queries(stakeholders=3, decisions=3)

    assert three == one


def test_the_admin_refuses_a_rule_without_conditions(board, staff):
    rule = board.rule("Legal review")
    condition = rule.conditions.get()
    form = {
        "account": board.account.pk,
        "name": "Nothing to check",
        "pipeline": board.pipeline.pk,
        "gated_stage": board.stage("Legal review").pk,
        "mode": "enforce",
        "is_active": "on",
        "task_template": "{deal}",
        "task_due_hours": 24,
        "conditions-TOTAL_FORMS": 1,
        "conditions-INITIAL_FORMS": 0,
        "conditions-0-role": "",
        "conditions-0-requirement": "approved",
        "conditions-0-n": 1,
    }

    added = staff.post(reverse("admin:gates_gaterule_add"), form)
    emptied = staff.post(
        reverse("admin:gates_gaterule_change", args=[rule.pk]),
        {
            **form,
            "name": rule.name,
            "conditions-INITIAL_FORMS": 1,
            "conditions-0-id": condition.pk,
            "conditions-0-rule": rule.pk,
            "conditions-0-role": condition.role_id,
            "conditions-0-DELETE": "on",
        },
    )

    assert added.status_code == 200
    assert "at least one condition" in added.content.decode()
    assert not GateRule.objects.filter(name="Nothing to check").exists()
    assert emptied.status_code == 200
    assert "at least one condition" in emptied.content.decode()
    assert rule.conditions.count() == 1


def test_the_deal_list_filters_by_stage_dropdown_and_price_range(board, staff):
    board.lead("Small", "Legal review", price=5_000)
    board.lead("Large", "Legal review", price=80_000)
    board.lead("Large elsewhere", "Signing", price=90_000)
    url = reverse("admin:kommo_lead_changelist")
    legal_review = board.stage("Legal review").pk

    response = staff.get(url, {"status__id__exact": legal_review, "price_from": 10_000, "price_to": 100_000})
    decisions = staff.get(reverse("admin:gates_gatedecision_changelist"))

    assert [lead.name for lead in response.context["cl"].result_list] == ["Large"]
    assert 'name="price_from"' in response.content.decode()
    assert 'name="decided_at_from"' in decisions.content.decode()
