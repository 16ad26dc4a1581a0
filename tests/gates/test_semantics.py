"""The gate semantics, exhaustively, without a database."""

import datetime as dt
import itertools

import pytest

from apps.gates.semantics import (
    APPROVED,
    NOT_BLOCKING,
    PRESENT,
    Condition,
    FreshLead,
    Freshness,
    Stage,
    StakeholderView,
    conditions_failures,
    exemption,
    freshness,
    furthest_back,
    gate_crossed,
    gate_marker,
    missing_summary,
    move_back_target,
    rule_marker,
    task_text_render,
    template_placeholders,
)
from apps.stakeholders.wording import role_in_sentence

B2B = 10
OTHER = 20
incoming = Stage(1000, B2B, 10)
qualification = Stage(1001, B2B, 20)
validation = Stage(1002, B2B, 30)
budget = Stage(1003, B2B, 40)
legal = Stage(1004, B2B, 50)
signing = Stage(1005, B2B, 60)
won = Stage(142, B2B, 10000)
lost = Stage(143, B2B, 11000)
OPEN = [incoming, qualification, validation, budget, legal, signing]
ALL = [*OPEN, won, lost]
other_first = Stage(2001, OTHER, 20)
other_late = Stage(2009, OTHER, 90)
other_won = Stage(142, OTHER, 10000)


class TestCrossing:
    def test_it_fires_when_the_deal_leaves_the_gated_stage_forward(self):
        assert gate_crossed(gated=legal, from_stage=legal, to_stage=signing)

    def test_it_fires_on_a_skip_over_the_gated_stage(self):
        assert gate_crossed(gated=legal, from_stage=validation, to_stage=signing)

    def test_it_fires_on_a_jump_straight_to_won(self):
        assert gate_crossed(gated=legal, from_stage=qualification, to_stage=won)
        assert gate_crossed(gated=legal, from_stage=legal, to_stage=won)

    def test_it_does_not_fire_on_a_move_to_lost(self):
        for origin in OPEN:
            assert not gate_crossed(gated=legal, from_stage=origin, to_stage=lost)

    def test_it_does_not_fire_on_a_backward_move(self):
        assert not gate_crossed(gated=legal, from_stage=signing, to_stage=qualification)
        assert not gate_crossed(gated=legal, from_stage=signing, to_stage=legal)

    def test_it_does_not_fire_on_a_forward_move_that_stays_before_the_gate(self):
        assert not gate_crossed(gated=legal, from_stage=qualification, to_stage=budget)
        assert not gate_crossed(gated=legal, from_stage=budget, to_stage=legal)

    def test_it_does_not_fire_on_a_forward_move_after_the_gate(self):
        assert not gate_crossed(gated=qualification, from_stage=legal, to_stage=signing)

    def test_it_matches_the_formula_for_every_pair_of_stages_of_the_pipeline(self):
        for gated in OPEN:
            for origin, target in itertools.permutations([*OPEN, won, lost], 2):
                if origin.is_closed:
                    continue
                expected = target != lost and origin.sort <= gated.sort < target.sort
                assert gate_crossed(gated=gated, from_stage=origin, to_stage=target) is expected, (
                    gated,
                    origin,
                    target,
                )

    def test_a_deal_entering_the_pipeline_past_the_gate_is_gated(self):
        assert gate_crossed(gated=legal, from_stage=other_late, to_stage=signing)
        assert gate_crossed(gated=legal, from_stage=other_first, to_stage=won)

    def test_a_deal_entering_the_pipeline_before_or_at_the_gate_is_not_gated(self):
        assert not gate_crossed(gated=legal, from_stage=other_late, to_stage=budget)
        assert not gate_crossed(gated=legal, from_stage=other_late, to_stage=legal)

    def test_a_deal_leaving_the_gated_pipeline_is_not_gated(self):
        assert not gate_crossed(gated=legal, from_stage=legal, to_stage=other_late)
        assert not gate_crossed(gated=legal, from_stage=qualification, to_stage=other_won)

    def test_a_reopened_deal_landing_past_the_gate_is_gated(self):
        assert gate_crossed(gated=legal, from_stage=lost, to_stage=signing)
        assert gate_crossed(gated=legal, from_stage=won, to_stage=signing)
        assert not gate_crossed(gated=legal, from_stage=lost, to_stage=budget)

    def test_a_deal_seen_for_the_first_time_is_not_a_move(self):
        assert not gate_crossed(gated=legal, from_stage=None, to_stage=signing)

    def test_staying_in_the_same_stage_is_not_a_move(self):
        assert not gate_crossed(gated=legal, from_stage=signing, to_stage=signing)


class TestMoveBack:
    def test_it_goes_back_to_the_stage_the_deal_came_from(self):
        assert move_back_target(gated=legal, from_stage=legal, configured=None) == legal
        assert move_back_target(gated=legal, from_stage=validation, configured=None) == validation

    def test_a_configured_stage_wins(self):
        assert move_back_target(gated=legal, from_stage=legal, configured=budget) == budget

    def test_a_deal_from_another_pipeline_or_reopened_waits_at_the_gate(self):
        assert move_back_target(gated=legal, from_stage=other_late, configured=None) == legal
        assert move_back_target(gated=legal, from_stage=lost, configured=None) == legal

    def test_several_targets_resolve_to_the_earliest(self):
        assert furthest_back([legal, qualification, budget]) == qualification


lawyer = 7
buyer = 8
user_role = 9


def person(name, role, approval="pending", label=None):
    labels = {lawyer: "Lawyer", buyer: "Decision maker", user_role: "User"}
    return StakeholderView(
        name=name, role_id=role, role_label=label or labels.get(role, "?"), approval=approval
    )


def cond(role, requirement, n=1):
    labels = {lawyer: "Lawyer", buyer: "Decision maker", user_role: "User"}
    return Condition(role_id=role, role_label=labels[role], requirement=requirement, n=n)


class TestConditions:
    def test_present_passes_with_enough_holders_whatever_their_approval(self):
        people = [person("Ann", buyer, "rejected")]
        assert conditions_failures(conditions=[cond(buyer, PRESENT)], stakeholders=people) == []

    def test_present_fails_without_a_holder(self):
        failures = conditions_failures(conditions=[cond(buyer, PRESENT)], stakeholders=[person("Bo", lawyer)])
        assert failures == ["no decision maker is identified on the deal"]

    def test_present_counts_to_n(self):
        people = [person("U1", user_role)]
        assert conditions_failures(conditions=[cond(user_role, PRESENT, 2)], stakeholders=people) == [
            "2 stakeholders as user needed, 1 identified"
        ]
        people.append(person("U2", user_role))
        assert conditions_failures(conditions=[cond(user_role, PRESENT, 2)], stakeholders=people) == []

    def test_approved_fails_while_the_lawyer_is_pending(self):
        failures = conditions_failures(
            conditions=[cond(lawyer, APPROVED)], stakeholders=[person("Lena Law", lawyer, "pending")]
        )
        assert failures == ["the lawyer has not approved (Lena Law: pending)"]

    def test_approved_passes_once_the_lawyer_approved(self):
        people = [person("Lena Law", lawyer, "approved")]
        assert conditions_failures(conditions=[cond(lawyer, APPROVED)], stakeholders=people) == []

    def test_approved_fails_without_a_lawyer(self):
        failures = conditions_failures(conditions=[cond(lawyer, APPROVED)], stakeholders=[])
        assert failures == ["no lawyer is on the deal to approve"]

    def test_approved_fails_on_rejected_and_unknown_states(self):
        for state in ("rejected", "unknown"):
            failures = conditions_failures(
                conditions=[cond(lawyer, APPROVED)], stakeholders=[person("L", lawyer, state)]
            )
            assert failures == [f"the lawyer has not approved (L: {state})"]

    def test_approved_with_n_counts_approvals(self):
        people = [person("A", lawyer, "approved"), person("B", lawyer, "pending")]
        assert conditions_failures(conditions=[cond(lawyer, APPROVED, 2)], stakeholders=people) == [
            "2 approvals by a lawyer needed, 1 given (B: pending)"
        ]

    def test_none_blocking_passes_without_holders_and_while_pending(self):
        assert conditions_failures(conditions=[cond(lawyer, NOT_BLOCKING)], stakeholders=[]) == []
        people = [person("L", lawyer, "pending")]
        assert conditions_failures(conditions=[cond(lawyer, NOT_BLOCKING)], stakeholders=people) == []

    def test_none_blocking_fails_when_one_rejected(self):
        people = [person("L1", lawyer, "approved"), person("L2", lawyer, "rejected")]
        assert conditions_failures(conditions=[cond(lawyer, NOT_BLOCKING)], stakeholders=people) == [
            "the lawyer rejected (L2)"
        ]

    def test_every_failing_condition_is_reported_in_order(self):
        failures = conditions_failures(
            conditions=[cond(buyer, PRESENT), cond(lawyer, APPROVED)], stakeholders=[person("L", lawyer)]
        )
        assert failures == [
            "no decision maker is identified on the deal",
            "the lawyer has not approved (L: pending)",
        ]

    def test_a_role_is_written_in_lower_case_mid_sentence_unless_an_acronym_or_a_name(self):
        def failure(label: str) -> str:
            condition = Condition(role_id=buyer, role_label=label, requirement=PRESENT)
            (said,) = conditions_failures(conditions=[condition], stakeholders=[])
            return said

        assert failure("Decision maker (economic buyer)") == (
            "no decision maker (economic buyer) is identified on the deal"
        )
        assert failure("CFO") == "no CFO is identified on the deal"
        assert failure("VP of sales") == "no VP of sales is identified on the deal"
        assert failure("cto") == "no cto is identified on the deal"  # typed so
        assert role_in_sentence("") == "" and role_in_sentence("X") == "x"

    def test_stakeholders_without_a_role_count_for_nothing(self):
        people = [StakeholderView(name="X", role_id=None, role_label="", approval="approved")]
        assert conditions_failures(conditions=[cond(lawyer, PRESENT)], stakeholders=people)

    def test_an_unknown_requirement_is_an_error(self):
        with pytest.raises(ValueError):
            conditions_failures(conditions=[Condition(1, "X", "sometimes")], stakeholders=[])


class TestExemption:
    def test_the_mover_in_the_exempt_list_passes(self):
        reason = exemption(exempt_user_ids=[5], override_tag="", moved_by=5, updated_by=None, tags=())
        assert reason == "moved by exempt user 5"

    def test_the_fresh_updated_by_is_used_when_the_mover_is_unknown(self):
        assert exemption(exempt_user_ids=[5], override_tag="", moved_by=None, updated_by=5, tags=())

    def test_the_known_mover_wins_over_updated_by(self):
        assert exemption(exempt_user_ids=[5], override_tag="", moved_by=6, updated_by=5, tags=()) is None

    def test_the_override_tag_passes_regardless_of_case(self):
        reason = exemption(
            exempt_user_ids=[],
            override_tag="Gate override",
            moved_by=1,
            updated_by=1,
            tags=["gate OVERRIDE "],
        )
        assert reason == "carries the override tag 'Gate override'"

    def test_no_tag_configured_means_no_override(self):
        assert exemption(exempt_user_ids=[], override_tag="", moved_by=1, updated_by=1, tags=[""]) is None


AT = dt.datetime(2025, 5, 1, 12, 0, tzinfo=dt.UTC)


def fresh(status=1005, pipeline=B2B, updated_at=AT, deleted=False):
    return FreshLead(
        status_kommo_id=status,
        pipeline_kommo_id=pipeline,
        updated_at=updated_at,
        updated_by=3,
        responsible_user_id=4,
        tags=(),
        is_deleted=deleted,
    )


class TestFreshness:
    def check(self, lead, later=False):
        return freshness(
            to_status_kommo_id=1005, to_pipeline_kommo_id=B2B, at=AT, fresh=lead, later_change_known=later
        )

    def test_a_deal_still_where_the_move_put_it_is_current(self):
        assert self.check(fresh()) is Freshness.CURRENT

    def test_a_deal_in_another_stage_has_moved(self):
        assert self.check(fresh(status=1004)) is Freshness.MOVED
        assert self.check(fresh(pipeline=OTHER)) is Freshness.MOVED

    def test_a_later_known_move_supersedes(self):
        assert self.check(fresh(updated_at=AT + dt.timedelta(seconds=30)), later=True) is Freshness.SUPERSEDED

    def test_a_later_edit_that_kept_the_stage_still_acts(self):
        assert self.check(fresh(updated_at=AT + dt.timedelta(seconds=30))) is Freshness.CURRENT

    def test_a_read_older_than_the_move_is_not_acted_on(self):
        assert self.check(fresh(updated_at=AT - dt.timedelta(minutes=5))) is Freshness.MOVED

    def test_a_deleted_or_missing_deal_is_gone(self):
        assert self.check(None) is Freshness.GONE
        assert self.check(fresh(deleted=True)) is Freshness.GONE


class TestTexts:
    def test_the_template_is_filled_and_unknown_placeholders_stay(self):
        text = task_text_render(
            template="{deal}: {missing} ({nope})", values={"deal": "Acme", "missing": "x"}
        )
        assert text == "Acme: x ({nope})"

    def test_placeholders_are_listed(self):
        assert template_placeholders("{deal} at {stage}") == {"deal", "stage"}
        with pytest.raises(ValueError):
            template_placeholders("{deal")

    def test_missing_reads_as_a_list(self):
        assert missing_summary(["a"]) == "a"
        assert missing_summary(["a", "b", "c"]) == "a; b and c"
        assert missing_summary([]) == ""

    def test_the_marker_names_its_rule_and_move(self):
        text = "Please fix it\n" + gate_marker(rule_id=12, stage_change_id=345)
        assert text.endswith("[portal gate 12 · move 345]")
        assert rule_marker(rule_id=12) in text
        assert rule_marker(rule_id=1) not in text
