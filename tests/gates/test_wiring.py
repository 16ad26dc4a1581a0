"""Every new stage change, whatever reported it, reaches the gates — after its transaction commits."""

from __future__ import annotations

from unittest import mock

import pytest

from apps.flows.sync import mirror_follow
from apps.gates.models import GateEvaluation
from apps.kommo.models import StageChange
from apps.kommo.services.mirror import stage_change_record
from tests.gates.conftest import legal_review_to_signing


@pytest.mark.parametrize("source", ["webhook", "sync", "events"])
def test_a_recorded_move_is_queued_for_the_gates_and_a_run_is_scheduled_on_commit(
    board, source, django_capture_on_commit_callbacks
):
    board.rule("Legal review")
    lead = board.lead()
    with mock.patch("apps.flows.gates.evaluate_pending.apply_async") as schedule:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            change, created = stage_change_record(
                **legal_review_to_signing(board, lead), source=source, follow=mirror_follow
            )
        assert created
        assert GateEvaluation.objects.get().stage_change == change
        schedule.assert_not_called()  # nothing runs before the transaction commits
        for callback in callbacks:
            callback()
    schedule.assert_called_once_with((board.account.pk,), countdown=mock.ANY)


def test_a_second_report_of_the_same_move_is_not_evaluated_again(board, django_capture_on_commit_callbacks):
    board.rule("Legal review")
    lead = board.lead()
    report = legal_review_to_signing(board, lead)
    with mock.patch("apps.flows.gates.evaluate_pending.apply_async"):
        with django_capture_on_commit_callbacks(execute=True):
            stage_change_record(**report, source=StageChange.Source.WEBHOOK, follow=mirror_follow)
            stage_change_record(
                **report, source=StageChange.Source.EVENTS, kommo_event_id="01abc", follow=mirror_follow
            )
    assert GateEvaluation.objects.count() == 1


def test_only_the_first_pending_move_of_a_burst_schedules_a_run(board, django_capture_on_commit_callbacks):
    board.rule("Legal review")
    with mock.patch("apps.flows.gates.evaluate_pending.apply_async") as schedule:
        with django_capture_on_commit_callbacks(execute=True):
            for _ in range(5):
                stage_change_record(
                    **legal_review_to_signing(board, board.lead()),
                    source=StageChange.Source.WEBHOOK,
                    follow=mirror_follow,
                )
    assert GateEvaluation.objects.count() == 5
    assert schedule.call_count == 1
