"""Gate rules: validation, database constraints, versions; decisions that never change; the dry run."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from apps.gates.models import GateCondition, GateDecision, GateRule
from apps.gates.selectors import gate_rule_dry_run
from apps.stakeholders.models import Role
from tests.factories import PipelineFactory, StatusFactory
from tests.gates.conftest import NOW


def errors_of(rule: GateRule) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        rule.clean()
    return caught.value.message_dict


class TestValidation:
    def test_a_sound_rule_is_valid(self, board):
        board.rule("Legal review", move_back_stage=board.stage("Budget approval")).clean()

    def test_the_gated_stage_must_belong_to_the_pipeline(self, board):
        other = PipelineFactory(account=board.account, kommo_id=9, name="Other")
        stage = StatusFactory(account=board.account, pipeline=other, kommo_id=9001, name="X", sort=10)
        rule = GateRule(account=board.account, name="r", pipeline=board.pipeline, gated_stage=stage)
        assert "gated_stage" in errors_of(rule)

    @pytest.mark.parametrize("closed", ["Closed - won", "Closed - lost"])
    def test_won_and_lost_cannot_be_gated(self, board, closed):
        rule = GateRule(
            account=board.account, name="r", pipeline=board.pipeline, gated_stage=board.stage(closed)
        )
        assert "final" in errors_of(rule)["gated_stage"][0]

    @pytest.mark.parametrize("back", ["Signing", "Closed - lost", "Incoming"])
    def test_the_move_back_stage_must_be_an_open_stage_at_or_before_the_gate(self, board, back):
        rule = GateRule(
            account=board.account,
            name="r",
            pipeline=board.pipeline,
            gated_stage=board.stage("Legal review"),
            move_back_stage=board.stage(back),
        )
        assert "move_back_stage" in errors_of(rule)

    def test_the_move_back_stage_must_be_in_the_same_pipeline(self, board):
        other = PipelineFactory(account=board.account, kommo_id=9, name="Other")
        stage = StatusFactory(account=board.account, pipeline=other, kommo_id=9001, name="X", sort=10)
        rule = GateRule(
            account=board.account,
            name="r",
            pipeline=board.pipeline,
            gated_stage=board.stage("Legal review"),
            move_back_stage=stage,
        )
        assert "same pipeline" in errors_of(rule)["move_back_stage"][0]

    def test_the_task_template_may_only_use_known_placeholders(self, board):
        rule = board.rule(task_template="{deal}: {whatever}")
        assert "whatever" in errors_of(rule)["task_template"][0]
        rule.task_template = "{deal"
        assert "braces" in errors_of(rule)["task_template"][0]

    def test_a_condition_needs_at_least_one(self, board):
        rule = board.rule(conditions=())
        with pytest.raises(ValidationError):
            GateCondition(rule=rule, role=Role.objects.get(code="user"), requirement="present", n=0).clean()
        with pytest.raises(IntegrityError), transaction.atomic():
            GateCondition.objects.create(
                rule=rule, role=Role.objects.get(code="user"), requirement="present", n=0
            )

    def test_the_database_refuses_an_unknown_mode(self, board):
        with pytest.raises(IntegrityError), transaction.atomic():
            board.rule(mode="sometimes")


def test_every_change_of_a_rule_is_a_new_version(board):
    rule = board.rule()
    assert rule.version == 1
    rule.mode = GateRule.Mode.DRY_RUN
    rule.save()
    assert rule.version == 2
    rule.save()
    assert GateRule.objects.get().version == 3


def decision(board, rule, lead, change) -> GateDecision:
    return GateDecision.objects.create(
        account=board.account,
        rule=rule,
        rule_version=rule.version,
        mode=rule.mode,
        lead=lead,
        stage_change=change,
        to_status_kommo_id=change.to_status_kommo_id,
        transition="Legal review → Signing",
        outcome=GateDecision.Outcome.ALLOWED,
    )


def test_a_decision_cannot_be_changed(board):
    rule = board.rule()
    lead = board.lead()
    made = decision(board, rule, lead, board.move(lead, "Signing"))
    made.outcome = GateDecision.Outcome.BLOCKED
    with pytest.raises(TypeError):
        made.save()
    with pytest.raises(TypeError):
        GateDecision.objects.filter(pk=made.pk).update(outcome="blocked")
    assert GateDecision.objects.get().outcome == GateDecision.Outcome.ALLOWED


def test_a_rule_decides_a_move_once(board):
    rule = board.rule()
    lead = board.lead()
    change = board.move(lead, "Signing")
    decision(board, rule, lead, change)
    with pytest.raises(IntegrityError), transaction.atomic():
        decision(board, rule, lead, change)


class TestDryRun:
    def test_it_lists_the_deals_past_the_gate_it_would_block_and_why(self, board):
        rule = board.rule("Legal review", mode=GateRule.Mode.DRY_RUN)
        pending = board.lead("Pending lawyer", "Signing")
        board.stakeholder(pending, "lawyer", "pending", name="Lena")
        approved = board.lead("Approved lawyer", "Closed - won")
        board.stakeholder(approved, "lawyer", "approved")
        board.lead("Before the gate", "Budget approval")
        board.lead("At the gate", "Legal review")
        board.lead("Lost", "Closed - lost")

        result = gate_rule_dry_run(
            rule=rule, since=NOW - dt.timedelta(days=30), until=NOW + dt.timedelta(days=1)
        )

        rows = {row.lead.name: row for row in result.current}
        assert set(rows) == {"Pending lawyer", "Approved lawyer"}
        assert rows["Pending lawyer"].would_block
        assert rows["Pending lawyer"].reasons == ["the lawyer has not approved (Lena: pending)"]
        assert not rows["Approved lawyer"].would_block
        assert result.current_blocked == 1

    def test_it_replays_past_moves_that_crossed_the_gate(self, board):
        rule = board.rule("Legal review", mode=GateRule.Mode.DRY_RUN)
        crossed = board.lead("Crossed", "Legal review")
        board.move(crossed, "Signing", at=NOW - dt.timedelta(days=2))
        backward = board.lead("Backward", "Signing")
        board.move(backward, "Legal review", at=NOW - dt.timedelta(days=1))
        old = board.lead("Long ago", "Legal review")
        board.move(old, "Signing", at=NOW - dt.timedelta(days=90))
        ours = board.lead("Portal's own", "Legal review")
        board.move(ours, "Signing", at=NOW - dt.timedelta(days=1), source="gate")
        exempt = board.lead("Head of sales", "Legal review")
        rule.exempt_users.add(board.head_of_sales)
        board.move(exempt, "Signing", at=NOW - dt.timedelta(days=1), moved_by=board.head_of_sales.kommo_id)

        result = gate_rule_dry_run(rule=rule, since=NOW - dt.timedelta(days=30), until=NOW)

        rows = {row.lead.name: row for row in result.history}
        assert set(rows) == {"Crossed", "Head of sales"}
        assert rows["Crossed"].would_block and rows["Crossed"].transition == "Legal review → Signing"
        assert not rows["Head of sales"].would_block and rows["Head of sales"].exempt

    def test_past_moves_are_judged_on_the_stakeholders_as_they_were_then(self, board):
        """Late approved the day after its move (its lawyer approves today's dry run); Early had approved
        before its move and was asked again since (pending today): the past moves are judged on then."""
        from apps.stakeholders.models import StakeholderEvent

        rule = board.rule("Legal review", mode=GateRule.Mode.DRY_RUN)

        def lawyer(lead, approval_now: str, changes: list[tuple[str, dt.datetime]]) -> None:
            person = board.stakeholder(lead, "lawyer", approval_now, name="Lena")
            role = Role.objects.get(code="lawyer").pk
            rows = [
                ("presence", "Lena", NOW - dt.timedelta(days=40)),
                ("role", role, NOW - dt.timedelta(days=40)),
            ]
            rows += [("approval_status", approval, at) for approval, at in changes]
            for field, new, at in rows:
                StakeholderEvent.objects.create(
                    account=board.account,
                    lead=lead,
                    stakeholder_id=person.pk,
                    name="Lena",
                    field=field,
                    new=new,
                    at=at,
                    source="sync",
                )

        late = board.lead("Late", "Legal review")
        board.move(late, "Signing", at=NOW - dt.timedelta(days=3))
        lawyer(
            late,
            "approved",
            [("pending", NOW - dt.timedelta(days=10)), ("approved", NOW - dt.timedelta(days=2))],
        )
        early = board.lead("Early", "Legal review")
        board.move(early, "Signing", at=NOW - dt.timedelta(days=3))
        lawyer(
            early,
            "pending",
            [("approved", NOW - dt.timedelta(days=5)), ("pending", NOW - dt.timedelta(days=1))],
        )
        unknown = board.lead("No history", "Legal review")  # judged on today's people
        board.move(unknown, "Signing", at=NOW - dt.timedelta(days=3))
        board.stakeholder(unknown, "lawyer", "approved")

        result = gate_rule_dry_run(rule=rule, since=NOW - dt.timedelta(days=30), until=NOW)

        rows = {row.lead.name: row for row in result.history}
        assert rows["Late"].would_block
        assert rows["Late"].reasons == ["the lawyer has not approved (Lena: pending)"]
        assert not rows["Early"].would_block
        assert not rows["No history"].would_block
        # Today the other way round.
        current = {row.lead.name: row for row in result.current}
        assert not current["Late"].would_block and current["Early"].would_block

    def test_a_deal_carrying_the_override_tag_in_the_mirror_is_exempt(self, board):
        rule = board.rule("Legal review", mode=GateRule.Mode.DRY_RUN, override_tag="Legal waived")
        waived = board.lead(
            "Waived", "Legal review", raw={"_embedded": {"tags": [{"id": 1, "name": " legal WAIVED"}]}}
        )
        board.move(waived, "Signing", at=NOW - dt.timedelta(days=1))
        other = board.lead("Other tag", "Signing", raw={"_embedded": {"tags": [{"id": 2, "name": "vip"}]}})

        result = gate_rule_dry_run(rule=rule, since=NOW - dt.timedelta(days=30), until=NOW)

        current = {row.lead.name: row for row in result.current}
        assert not current["Waived"].would_block
        assert current["Waived"].exempt == "carries the override tag 'Legal waived'"
        assert current[other.name].would_block and current[other.name].exempt is None
        (history,) = result.history
        assert history.lead == waived and not history.would_block and history.exempt
