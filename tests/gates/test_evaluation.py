"""Gate evaluation against the mirror, with Kommo's fresh read answered by the fake Kommo."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.flows.gates import gates_outbound_flush, gates_run_now
from apps.gates import services
from apps.gates.models import GateDecision, GateEvaluation, GateRule
from apps.gates.services import (
    gate_evaluations_run,
    gate_moves_undecided,
    gates_enforce,
    stage_change_gate_intake,
)
from apps.kommo.models import OutboundChange, StageChange, WebhookEvent
from apps.kommo.services.outbound import BACKLOG_RECHECK, BURST_HOLD_MAX, BURST_MOVES
from apps.kommo.tasks import outbound_flush
from tests.gates.conftest import HEAD_OF_SALES_ID, MANAGER_ID, NOW, in_kommo
from tests.support.fake_kommo import FakeKommo

Outcome = GateDecision.Outcome


def queue(change: StageChange) -> GateEvaluation:
    evaluation = stage_change_gate_intake(stage_change=change)
    assert evaluation is not None
    return evaluation


def fresh_reads(kommo: FakeKommo) -> list[list[str]]:
    return [query.get("filter[id][]", []) for query in kommo.calls_to("/api/v4/leads", "GET")]


@pytest.fixture
def legal_gate(board):
    return board.rule("Legal review", name="The lawyer approved to leave Legal review")


def test_it_moves_the_deal_back_when_the_lawyer_has_not_approved(board, legal_gate, kommo_client, kommo):
    lead = board.lead("Northwind renewal", "Legal review")
    board.stakeholder(lead, "lawyer", "pending", name="Lena Law")
    change = board.move(lead, "Signing")
    queue(change)
    in_kommo(kommo, lead, status=board.stage("Signing").kommo_id)

    run = gate_evaluations_run(account_id=board.account.pk, client=kommo_client)

    decision = GateDecision.objects.get()
    assert decision.outcome == Outcome.BLOCKED
    assert decision.rule == legal_gate and decision.rule_version == legal_gate.version
    assert decision.reasons == ["the lawyer has not approved (Lena Law: pending)"]
    assert decision.transition == "Legal review → Signing"
    assert decision.stakeholders == [
        {
            "name": "Lena Law",
            "role_id": decision.stakeholders[0]["role_id"],
            "role": "Lawyer",
            "approval": "pending",
            "approval_decided_at": None,
            "last_touch": decision.stakeholders[0]["last_touch"],
            "objection": None,
        }
    ]
    assert decision.latency_ms is not None
    move = OutboundChange.objects.get(kind=OutboundChange.Kind.LEAD_STATUS)
    assert move.entity_kommo_id == lead.kommo_id
    assert move.payload["status_id"] == board.stage("Legal review").kommo_id
    assert move.idempotency_key == f"gate:move:{change.pk}"
    # when the move was reported travels with the move back: the outbound plan bounds its wait by it
    assert move.payload["reported_at"] == GateEvaluation.objects.get().received_at.timestamp()
    assert move.payload["moved_at"] == change.at.timestamp()
    task = OutboundChange.objects.get(kind=OutboundChange.Kind.TASK_CREATE)
    assert "lawyer has not approved" in task.payload["text"]
    assert "Northwind renewal was moved back from Signing to Legal review" in task.payload["text"]
    assert task.payload["responsible_user_id"] == MANAGER_ID
    note = OutboundChange.objects.get(kind=OutboundChange.Kind.NOTE_CREATE)
    assert "lawyer has not approved" in note.payload["text"]
    assert [action["action"] for action in decision.actions] == ["move back", "task", "note"]
    assert run.blocked == 1 and run.outbound == 3
    assert GateEvaluation.objects.get().status == GateEvaluation.Status.DONE


def test_it_lets_the_move_stay_once_the_lawyer_approved(board, legal_gate, kommo_client, kommo):
    lead = board.lead()
    board.stakeholder(lead, "lawyer", "approved")
    queue(board.move(lead, "Signing"))
    in_kommo(kommo, lead, status=board.stage("Signing").kommo_id)

    gate_evaluations_run(account_id=board.account.pk, client=kommo_client)

    assert GateDecision.objects.get().outcome == Outcome.ALLOWED
    assert not OutboundChange.objects.exists()


def test_a_dry_run_rule_records_what_it_would_block_and_touches_nothing(board, kommo_client, kommo):
    board.rule("Legal review", mode=GateRule.Mode.DRY_RUN)
    lead = board.lead()
    queue(board.move(lead, "Signing"))
    in_kommo(kommo, lead, status=board.stage("Signing").kommo_id)

    gate_evaluations_run(account_id=board.account.pk, client=kommo_client)

    decision = GateDecision.objects.get()
    assert decision.outcome == Outcome.WOULD_BLOCK
    assert decision.reasons == ["no lawyer is on the deal to approve"]
    assert not OutboundChange.objects.exists()


def test_a_move_by_an_exempt_user_passes_and_is_recorded(board, kommo_client, kommo):
    rule = board.rule("Legal review")
    rule.exempt_users.add(board.head_of_sales)
    lead = board.lead()
    queue(board.move(lead, "Signing", moved_by=HEAD_OF_SALES_ID))
    in_kommo(kommo, lead, status=board.stage("Signing").kommo_id)

    gate_evaluations_run(account_id=board.account.pk, client=kommo_client)

    decision = GateDecision.objects.get()
    assert decision.outcome == Outcome.EXEMPT
    assert decision.reasons == [f"moved by exempt user {HEAD_OF_SALES_ID}"]
    assert not OutboundChange.objects.exists()


def test_the_fresh_updated_by_counts_when_the_mover_is_unknown(board, kommo_client, kommo):
    rule = board.rule("Legal review")
    rule.exempt_users.add(board.head_of_sales)
    lead = board.lead()
    queue(board.move(lead, "Signing", moved_by=None))
    signing = board.stage("Signing").kommo_id
    in_kommo(kommo, lead, status=signing, updated_by=HEAD_OF_SALES_ID)

    gate_evaluations_run(account_id=board.account.pk, client=kommo_client)

    assert GateDecision.objects.get().outcome == Outcome.EXEMPT


def test_a_deal_carrying_the_override_tag_passes(board, kommo_client, kommo):
    board.rule("Legal review", override_tag="Legal waived")
    lead = board.lead()
    queue(board.move(lead, "Signing"))
    in_kommo(kommo, lead, status=board.stage("Signing").kommo_id, tags=["legal waived"])

    gate_evaluations_run(account_id=board.account.pk, client=kommo_client)

    decision = GateDecision.objects.get()
    assert decision.outcome == Outcome.EXEMPT
    assert "override tag" in decision.reasons[0]


def test_a_stale_delivery_does_no_harm(board, legal_gate, kommo_client, kommo):
    lead = board.lead()
    queue(board.move(lead, "Signing"))
    # Meanwhile the manager moved it back himself: Kommo has it in Legal review again.
    later = NOW + dt.timedelta(minutes=1)
    in_kommo(kommo, lead, status=board.stage("Legal review").kommo_id, updated_at=later)

    gate_evaluations_run(account_id=board.account.pk, client=kommo_client)

    decision = GateDecision.objects.get()
    assert decision.outcome == Outcome.STALE
    assert "Legal review" in decision.reasons[0]
    assert not OutboundChange.objects.exists()


def test_an_earlier_move_delivered_after_a_later_one_is_skipped(board, legal_gate, kommo_client, kommo):
    lead = board.lead(stage="Budget approval")
    first = board.move(lead, "Legal review", at=NOW)
    second = board.move(lead, "Signing", at=NOW + dt.timedelta(seconds=20))
    queue(second)
    queue(first)
    # The first move crosses nothing; move the clock on: Legal review → Signing crossed, then a later
    # move Signing → won is known before the first is evaluated.
    won = board.move(lead, "Closed - won", at=NOW + dt.timedelta(seconds=40))
    del won
    in_kommo(kommo, lead, status=142, updated_at=NOW + dt.timedelta(seconds=40))

    gate_evaluations_run(account_id=board.account.pk, client=kommo_client)

    outcomes = {d.stage_change_id: d.outcome for d in GateDecision.objects.all()}
    assert outcomes == {second.pk: Outcome.STALE}


def test_backward_moves_and_moves_to_lost_are_not_gated_nor_read(board, legal_gate, kommo_client, kommo):
    backward = board.lead(stage="Signing")
    lost = board.lead(stage="Legal review")
    queue(board.move(backward, "Budget approval"))
    queue(board.move(lost, "Closed - lost"))

    gate_evaluations_run(account_id=board.account.pk, client=kommo_client)

    assert not GateDecision.objects.exists()
    assert kommo.calls == []
    assert set(GateEvaluation.objects.values_list("status", flat=True)) == {GateEvaluation.Status.DONE}


def test_a_jump_straight_to_won_is_gated(board, legal_gate, kommo_client, kommo):
    lead = board.lead(stage="Technical validation")
    queue(board.move(lead, "Closed - won"))
    in_kommo(kommo, lead, status=142)

    gate_evaluations_run(account_id=board.account.pk, client=kommo_client)

    assert GateDecision.objects.get().outcome == Outcome.BLOCKED
    move = OutboundChange.objects.get(kind=OutboundChange.Kind.LEAD_STATUS)
    assert move.payload["status_id"] == board.stage("Technical validation").kommo_id


def test_a_skip_over_two_gates_moves_back_once_before_both_and_tasks_for_each(board, kommo_client, kommo):
    board.rule("DM qualification", conditions=(("decision_maker", "present", 1),))
    board.rule("Legal review")
    lead = board.lead(stage="DM qualification")
    queue(board.move(lead, "Signing"))
    in_kommo(kommo, lead, status=board.stage("Signing").kommo_id)

    gate_evaluations_run(account_id=board.account.pk, client=kommo_client)

    assert GateDecision.objects.filter(outcome=Outcome.BLOCKED).count() == 2
    moves = OutboundChange.objects.filter(kind=OutboundChange.Kind.LEAD_STATUS)
    assert [m.payload["status_id"] for m in moves] == [board.stage("DM qualification").kommo_id]
    assert OutboundChange.objects.filter(kind=OutboundChange.Kind.TASK_CREATE).count() == 2


def test_moves_pending_together_are_re_read_in_one_call(board, legal_gate, kommo_client, kommo):
    leads = [board.lead(f"Deal {i}") for i in range(3)]
    for lead in leads:
        queue(board.move(lead, "Signing"))
    signing = board.stage("Signing").kommo_id
    for lead in leads:
        in_kommo(kommo, lead, status=signing)

    run = gate_evaluations_run(account_id=board.account.pk, client=kommo_client)

    assert fresh_reads(kommo) == [[str(lead.kommo_id) for lead in sorted(leads, key=lambda x: x.kommo_id)]]
    assert run.blocked == 3


def queries_of_a_run(board, kommo_client, kommo, *, deals: int) -> list[dict[str, str]]:
    """The queries of evaluating ``deals`` moves to Signing that are all blocked."""
    leads = [board.lead(f"Deal {i}") for i in range(deals)]
    for lead in leads:
        queue(board.move(lead, "Signing"))
    signing = board.stage("Signing").kommo_id
    for lead in leads:
        in_kommo(kommo, lead, status=signing)
    with CaptureQueriesContext(connection) as queries:
        run = gate_evaluations_run(account_id=board.account.pk, client=kommo_client)
    assert run.blocked == deals and run.outbound == 3 * deals
    return queries.captured_queries


def account_reads_of_a_run(board, kommo_client, kommo, deals: int) -> int:
    """How many times evaluating ``deals`` moves that are all blocked reads the account row."""
    queries = queries_of_a_run(board, kommo_client, kommo, deals=deals)
    return sum('FROM "kommo_kommoaccount"' in query["sql"] for query in queries)


def test_blocking_more_moves_does_not_read_the_account_again_per_move(board, legal_gate, kommo_client, kommo):
    one = account_reads_of_a_run(board, kommo_client, kommo, deals=1)
    three = account_reads_of_a_run(board, kommo_client, kommo, deals=3)

    assert three == one


def test_a_blocked_move_queues_its_move_back_task_and_note_in_two_queries(
    board, legal_gate, kommo_client, kommo
):
    # Each move is decided in a transaction of its own: the check that it was not decided before, the
    # decision, its evaluation done, and its three writes queued in one read of their keys and one INSERT
    # (three get_or_create were a read, a savepoint, an INSERT and a release each).
    one = len(queries_of_a_run(board, kommo_client, kommo, deals=1))
    eleven = len(queries_of_a_run(board, kommo_client, kommo, deals=11))

    assert eleven - one <= 10 * 9  # 17 per move before


def test_evaluating_the_same_move_again_decides_and_sends_nothing_more(
    board, legal_gate, kommo_client, kommo
):
    lead = board.lead()
    evaluation = queue(board.move(lead, "Signing"))
    in_kommo(kommo, lead, status=board.stage("Signing").kommo_id)
    gate_evaluations_run(account_id=board.account.pk, client=kommo_client)
    GateEvaluation.objects.filter(pk=evaluation.pk).update(status=GateEvaluation.Status.PENDING)

    gate_evaluations_run(account_id=board.account.pk, client=kommo_client)

    assert GateDecision.objects.count() == 1
    assert OutboundChange.objects.count() == 3


def test_a_transient_read_failure_puts_the_moves_back_for_a_retry(board, legal_gate, kommo_client, kommo):
    lead = board.lead()
    queue(board.move(lead, "Signing"))
    kommo.failure = (503, {"title": "Service Unavailable", "status": 503})

    run = gate_evaluations_run(account_id=board.account.pk, client=kommo_client)

    assert run.retry_in is not None and run.retry_in > 0
    assert GateEvaluation.objects.get().status == GateEvaluation.Status.PENDING
    assert not GateDecision.objects.exists()


def test_after_deciding_a_run_tells_how_many_moves_still_wait_for_a_decision(
    board, legal_gate, kommo_client, kommo, monkeypatch
):
    # What ends a burst's hold in the outbound plan: none left (and no delivery of moves waiting).
    monkeypatch.setattr(services, "CLAIM_LIMIT", 1)
    leads = [board.lead(f"Deal {i}") for i in range(3)]
    evaluations = [queue(board.move(lead, "Signing")) for lead in leads]
    for lead in leads:
        in_kommo(kommo, lead, status=board.stage("Signing").kommo_id)
    GateEvaluation.objects.filter(pk=evaluations[2].pk).update(  # another run is deciding it
        status=GateEvaluation.Status.RUNNING, claimed_at=timezone.now()
    )

    first = gate_evaluations_run(account_id=board.account.pk, client=kommo_client)
    second = gate_evaluations_run(account_id=board.account.pk, client=kommo_client)

    assert (first.blocked, first.undecided, first.retry_in) == (1, 2, 0.0)
    assert (second.blocked, second.undecided, second.retry_in) == (1, 1, None)
    assert gate_moves_undecided(account_id=board.account.pk) == 1
    # A run lost for STUCK_RUNNING is not waited for: the sweeper gives its moves to another run.
    GateEvaluation.objects.filter(pk=evaluations[2].pk).update(
        claimed_at=timezone.now() - services.STUCK_RUNNING - dt.timedelta(seconds=1)
    )
    assert gate_moves_undecided(account_id=board.account.pk) == 0


def test_a_burst_goes_back_in_one_patch_once_its_last_move_is_decided(
    board, legal_gate, kommo_client, kommo, monkeypatch
):
    # 16 deals moved to Signing in one Kommo second, decided in two runs: the first run's 10 moves back
    # wait for the rest of the burst Kommo reported, and the flush after the last decision sends all 16.
    monkeypatch.setattr(services, "CLAIM_LIMIT", 10)
    leads = [board.lead(f"Deal {i}") for i in range(16)]
    for lead in leads:
        queue(board.move(lead, "Signing"))
        in_kommo(kommo, lead, status=board.stage("Signing").kommo_id)

    first = gates_enforce(account_id=board.account.pk, client=kommo_client)
    assert (first.evaluation.blocked, first.evaluation.undecided) == (10, 6)
    assert kommo.bodies("PATCH", "/api/v4/leads") == []

    gates_enforce(account_id=board.account.pk, client=kommo_client)

    assert [len(body) for body in kommo.bodies("PATCH", "/api/v4/leads")] == [16]


def test_the_gates_own_scheduled_flush_sends_a_burst_once_it_is_over_and_kommos_waits_for_the_bound(
    board, legal_gate, kommo_client, kommo
):
    # The flush after the burst's last decision saw a delivery of moves waiting (the portal's own moves
    # back coming back, or the burst's last moves): the moves back stay held, to be looked at again soon.
    # Once it is processed, the gates' scheduled flush knows nothing is left to decide and sends them; the
    # Kommo boundary's own flush cannot know that, and leaves them to the bound.
    leads = [board.lead(f"Deal {i}") for i in range(BURST_MOVES)]
    for lead in leads:
        queue(board.move(lead, "Signing"))
        in_kommo(kommo, lead, status=board.stage("Signing").kommo_id)
    delivery = WebhookEvent.objects.create(
        account=board.account,
        body=b"",
        content_type="application/x-www-form-urlencoded",
        events="leads[status]",
    )

    with mock.patch("apps.kommo.tasks.outbound_flush_reserve", return_value=None) as scheduled:
        run = gates_run_now(account_id=board.account.pk, client=kommo_client)
    assert run.evaluation.undecided == 0 and kommo.bodies("PATCH", "/api/v4/leads") == []
    assert run.flush_in == pytest.approx(BACKLOG_RECHECK.total_seconds(), abs=0.1)
    scheduled.assert_called_once()
    WebhookEvent.objects.filter(pk=delivery.pk).update(status=WebhookEvent.Status.PROCESSED)

    with mock.patch("apps.kommo.tasks.outbound_flush_schedule") as kommos_next:
        outbound_flush(board.account.pk, reserved=False)
    assert kommo.bodies("PATCH", "/api/v4/leads") == []
    assert kommos_next.call_args.kwargs["delay"] > BURST_HOLD_MAX.total_seconds() - 1
    with mock.patch("apps.flows.gates.outbound_flush_schedule"):
        gates_outbound_flush(board.account.pk, reserved=False)

    assert [len(body) for body in kommo.bodies("PATCH", "/api/v4/leads")] == [BURST_MOVES]


def test_a_permanent_read_failure_is_recorded_as_an_error_decision(board, legal_gate, kommo_client, kommo):
    lead = board.lead()
    queue(board.move(lead, "Signing"))
    kommo.failure = (402, {"title": "Payment Required", "status": 402, "detail": "Payment required"})

    gate_evaluations_run(account_id=board.account.pk, client=kommo_client)

    decision = GateDecision.objects.get()
    assert decision.outcome == Outcome.ERROR
    assert "could not re-read the deal" in decision.reasons[0]
    assert GateEvaluation.objects.get().status == GateEvaluation.Status.DONE


class TestIntake:
    def test_a_move_on_a_pipeline_without_an_active_rule_is_not_queued(self, board):
        board.rule("Legal review", is_active=False)
        assert stage_change_gate_intake(stage_change=board.move(board.lead(), "Signing")) is None

    def test_the_portals_own_move_is_not_queued(self, board, legal_gate):
        change = board.move(board.lead(stage="Signing"), "Legal review", source=StageChange.Source.GATE)
        assert stage_change_gate_intake(stage_change=change) is None

    def test_the_echo_of_the_portals_move_is_recorded_as_a_gate_move(self, board, legal_gate):
        lead = board.lead(stage="Signing")
        OutboundChange.objects.create(
            account=board.account,
            kind=OutboundChange.Kind.LEAD_STATUS,
            entity_kommo_id=lead.kommo_id,
            payload={
                "status_id": board.stage("Legal review").kommo_id,
                "pipeline_id": lead.pipeline_kommo_id,
            },
            idempotency_key="gate:move:1",
            status=OutboundChange.Status.SENT,
            sending_at=dt.datetime.now(tz=dt.UTC),
        )
        change = board.move(lead, "Legal review")

        assert stage_change_gate_intake(stage_change=change) is None
        change.refresh_from_db()
        assert change.source == StageChange.Source.GATE
        assert OutboundChange.objects.get().echoed_at is not None
