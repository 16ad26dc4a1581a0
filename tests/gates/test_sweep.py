"""The gates' sweeper (beat): work whose task was lost goes back in line; work held by an open circuit
breaker stays where it is."""

from __future__ import annotations

import datetime as dt
from unittest import mock

from django.utils import timezone

from apps.flows.gates import sweep
from apps.gates.models import GateEvaluation
from apps.gates.services import STUCK_RUNNING, SWEEP_AFTER, gates_sweep
from apps.kommo.models import KommoAccount, OutboundChange
from apps.kommo.services.outbound import STUCK_SENDING

State = OutboundChange.Status


def evaluation(board, *, status=GateEvaluation.Status.PENDING, age=dt.timedelta(0), claimed_age=None):
    row = GateEvaluation.objects.create(
        account=board.account, stage_change=board.move(board.lead(), "Signing"), status=status
    )
    now = timezone.now()
    GateEvaluation.objects.filter(pk=row.pk).update(
        modified=now - age, claimed_at=now - claimed_age if claimed_age is not None else None
    )
    return row


def change(board, n, *, status=State.PENDING, age=dt.timedelta(0), sending_age=None, retry_in=None):
    row = OutboundChange.objects.create(
        account=board.account,
        kind=OutboundChange.Kind.LEAD_STATUS,
        entity_kommo_id=n,
        payload={"status_id": 4004},
        idempotency_key=f"gate:move:{n}",
        status=status,
    )
    now = timezone.now()
    OutboundChange.objects.filter(pk=row.pk).update(
        modified=now - age,
        sending_at=now - sending_age if sending_age is not None else None,
        next_attempt_at=now + retry_in if retry_in is not None else None,
    )
    return row


def test_nothing_recent_is_swept(board):
    evaluation(board)
    change(board, 1)
    change(board, 2, status=State.SENDING, sending_age=dt.timedelta(seconds=5))

    found = gates_sweep()

    assert (found.evaluate, found.flush) == ([], [])


def test_evaluations_and_changes_left_behind_are_found(board):
    evaluation(board, age=SWEEP_AFTER + dt.timedelta(seconds=1))
    change(board, 1, status=State.UNKNOWN, age=SWEEP_AFTER + dt.timedelta(seconds=1))

    found = gates_sweep()

    assert (found.evaluate, found.flush) == ([board.account.pk], [board.account.pk])


def test_a_claim_or_a_send_abandoned_by_a_dead_worker_is_found(board):
    evaluation(
        board, status=GateEvaluation.Status.RUNNING, claimed_age=STUCK_RUNNING + dt.timedelta(seconds=1)
    )
    change(board, 1, status=State.SENDING, sending_age=STUCK_SENDING + dt.timedelta(seconds=1))

    found = gates_sweep()

    assert (found.evaluate, found.flush) == ([board.account.pk], [board.account.pk])


def test_a_change_waiting_for_its_retry_is_not_swept_before_the_retry_is_overdue(board):
    change(board, 1, age=SWEEP_AFTER * 10, retry_in=dt.timedelta(seconds=30))

    assert gates_sweep().flush == []


def test_an_account_blocked_by_kommo_is_left_alone(board):
    evaluation(board, age=SWEEP_AFTER * 2)
    change(board, 1, age=SWEEP_AFTER * 2)
    KommoAccount.objects.filter(pk=board.account.pk).update(blocked_since=timezone.now())

    found = gates_sweep()

    assert (found.evaluate, found.flush) == ([], [])


def test_the_beat_task_queues_one_evaluation_and_one_flush_per_account(board):
    evaluation(board, age=SWEEP_AFTER * 2)
    evaluation(board, age=SWEEP_AFTER * 2)
    change(board, 1, age=SWEEP_AFTER * 2)
    change(board, 2, age=SWEEP_AFTER * 2)

    with (
        mock.patch("apps.flows.gates.evaluate_pending.delay") as evaluate,
        mock.patch("apps.flows.gates.outbound_flush.apply_async") as flush,
    ):
        sweep()

    evaluate.assert_called_once_with(board.account.pk)
    flush.assert_called_once_with((board.account.pk,), kwargs={"reserved": False})


def test_the_sweeper_is_on_the_beat_schedule(settings):
    entries = [entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()]
    assert "apps.gates.tasks.sweep" in entries
