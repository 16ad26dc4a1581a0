"""From a recorded move to Kommo's write: the gates judge the move, the outbound queue sends the result.

:func:`gates_run_now` is the whole of it for one account — evaluate the pending moves (on the mirror's copy
of a deal when it is fresh, else one re-read), write the decisions and queue the writes, send what the
outbound plan says is due — and schedules what follows: the evaluation again when moves are left or the
re-read must be retried, the account's outbound flush when changes wait (:func:`gates_outbound_flush`, the
Kommo boundary's flush told how many moves the gates have still to decide, which ends a burst's hold).
Webhook processing's flow calls it at the end of its batch; the ``evaluate_pending`` task runs it for the
moves the other sources record (the sync, the events sweep), a short window after the first of them.

The task names stay those of the gates' tasks module they were once in: a broker may hold messages under
them, and the routes (``CELERY_TASK_ROUTES``) send them to the ``kommo`` queue by name (the flush's too,
``apps.gates.tasks.outbound_flush``, for the same route).
"""

from __future__ import annotations

from functools import partial

from celery import shared_task
from django.db import transaction

from apps.core.broker import publish_all
from apps.gates.models import GateEvaluation
from apps.gates.services import (
    BATCH_WINDOW_SECONDS,
    EnforcementRun,
    gate_evaluation_starts_batch,
    gate_moves_undecided,
    gates_enforce,
    gates_sweep,
    stage_change_gate_intake,
)
from apps.kommo.client import KommoClient
from apps.kommo.models import StageChange
from apps.kommo.tasks import outbound_flush, outbound_flush_run, outbound_flush_schedule
from apps.kommo.webhooks.processing import webhook_backlog, webhook_moves_backlog


def gates_run_now(*, account_id: int, client: KommoClient | None = None) -> EnforcementRun:
    """Evaluate the account's pending moves, send what is due, and schedule what follows."""
    run = gates_enforce(
        account_id=account_id,
        client=client,
        backlog=webhook_backlog(account_id=account_id),
        moves_backlog=webhook_moves_backlog(account_id=account_id),
    )
    if run.evaluation.retry_in is not None:
        evaluate_pending.apply_async((account_id,), countdown=run.evaluation.retry_in)
    if run.flush_in is not None:
        outbound_flush_schedule(account_id=account_id, delay=run.flush_in, task=gates_outbound_flush)
    return run


def gates_run_soon(*, account_id: int) -> None:
    """The evaluation of moves left queued (``gates_run_now`` failed): the task takes them over, and the
    gates' sweeper if that is lost too."""
    evaluate_pending.apply_async((account_id,), countdown=BATCH_WINDOW_SECONDS)


def gates_queue_move(*, stage_change: StageChange) -> None:
    """A move recorded by another source than webhook processing (the sync, the events sweep, the admin's
    resync, intake): queued for the gates in the recording transaction, evaluated by ``evaluate_pending``
    once it commits."""
    evaluation = stage_change_gate_intake(stage_change=stage_change)
    if evaluation is not None:
        transaction.on_commit(partial(_schedule, evaluation))


def _schedule(evaluation: GateEvaluation) -> None:
    if gate_evaluation_starts_batch(evaluation=evaluation):
        evaluate_pending.apply_async((evaluation.account_id,), countdown=BATCH_WINDOW_SECONDS)


@shared_task(name="apps.gates.tasks.evaluate_pending", ignore_result=True)
def evaluate_pending(account_id: int) -> None:
    """Evaluate the account's pending moves and send the moves back that are due at once; tasks and notes
    follow as the outbound plan has it."""
    gates_run_now(account_id=account_id)


@shared_task(name="apps.gates.tasks.outbound_flush", ignore_result=True)
def gates_outbound_flush(account_id: int, *, reserved: bool = True) -> None:
    """The account's outbound flush (``apps.kommo.tasks.outbound_flush``) as the gates schedule it: the
    plan is told how many moves still wait for their decision, so that a burst's moves back go as soon as
    it is over rather than when their hold runs out. It schedules itself for the rest."""
    outbound_flush_run(
        account_id=account_id,
        reserved=reserved,
        undecided=gate_moves_undecided(account_id=account_id),
        task=gates_outbound_flush,
    )


@shared_task(name="apps.gates.tasks.sweep", ignore_result=True)
def sweep() -> None:
    """Beat: re-queue the gates' work whose task was lost — evaluations left pending or running, outbound
    changes left pending, unknown or sending — one task per account."""
    found = gates_sweep()
    publish_all(
        [
            (partial(evaluate_pending.delay, account_id), f"gates: the evaluation of account {account_id}")
            for account_id in found.evaluate
        ]
        + [
            (
                partial(outbound_flush.apply_async, (account_id,), kwargs={"reserved": False}),
                f"gates: the outbound flush of account {account_id}",
            )
            for account_id in found.flush
        ]
    )
