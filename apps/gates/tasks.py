"""Celery tasks of the gates (queue ``kommo``): thin — call one service, then decide what runs next."""

from __future__ import annotations

from celery import shared_task

from apps.gates.services import gates_enforce, gates_sweep
from apps.kommo.tasks import outbound_flush, outbound_flush_schedule
from apps.kommo.webhooks.processing import webhook_backlog


def enforce_now(account_id: int) -> None:
    """Evaluate the account's pending moves, send what is due and schedule what follows: the evaluation
    again when moves are left or the re-read must be retried, the outbound flush when changes wait. Run by
    ``evaluate_pending`` and, for the moves webhook processing has just recorded, at the end of its task."""
    run = gates_enforce(account_id=account_id, backlog=webhook_backlog(account_id=account_id))
    if run.evaluation.retry_in is not None:
        evaluate_pending.apply_async((account_id,), countdown=run.evaluation.retry_in)
    if run.flush_in is not None:
        outbound_flush_schedule(account_id=account_id, delay=run.flush_in)


@shared_task(name="apps.gates.tasks.evaluate_pending", ignore_result=True)
def evaluate_pending(account_id: int) -> None:
    """Evaluate the account's pending moves and send the moves back that are due at once; tasks and notes
    follow as the outbound plan has it."""
    enforce_now(account_id)


@shared_task(name="apps.gates.tasks.sweep", ignore_result=True)
def sweep() -> None:
    """Beat: re-queue the gates' work whose task was lost — evaluations left pending or running, outbound
    changes left pending, unknown or sending — one task per account."""
    found = gates_sweep()
    for account_id in found.evaluate:
        evaluate_pending.delay(account_id)
    for account_id in found.flush:
        outbound_flush.apply_async((account_id,), kwargs={"reserved": False})
