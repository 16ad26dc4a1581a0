"""Celery tasks of the gates (queue ``kommo``): thin — call one service, then decide what runs next."""

from __future__ import annotations

from celery import shared_task

from apps.gates.services import gates_enforce, gates_sweep
from apps.kommo.services.outbound import outbound_changes_drain
from apps.kommo.tasks import outbound_flush, outbound_flush_schedule


def enforce_now(account_id: int) -> None:
    """Evaluate the account's pending moves, send what is due and schedule what follows: the evaluation
    again when moves are left or the re-read must be retried, the outbound flush when changes wait. Run by
    ``evaluate_pending`` and, for the moves webhook processing has just recorded, at the end of its task."""
    run = gates_enforce(account_id=account_id)
    if run.evaluation.retry_in is not None:
        evaluate_pending.apply_async((account_id,), countdown=run.evaluation.retry_in)
    if run.flush_in is not None:
        outbound_flush_schedule(account_id=account_id, delay=run.flush_in)


@shared_task(name="apps.gates.tasks.evaluate_pending", ignore_result=True)
def evaluate_pending(account_id: int) -> None:
    """Evaluate the account's pending moves and send the moves back that are due at once; tasks and notes
    follow as the outbound plan has it."""
    enforce_now(account_id)


@shared_task(name="apps.gates.tasks.drain_outbound", ignore_result=True)
def drain_outbound(account_id: int, kinds: list[str] | None = None) -> None:
    """Send the account's due outbound changes (of ``kinds``, default all) in batches now, whatever the
    plan (the admin's retry); come back when retries fall due."""
    result = outbound_changes_drain(account_id=account_id, kinds=kinds)
    if result.retry_in is not None:
        drain_outbound.apply_async((account_id, kinds), countdown=result.retry_in)


@shared_task(name="apps.gates.tasks.sweep", ignore_result=True)
def sweep() -> None:
    """Beat: re-queue the gates' work whose task was lost — evaluations left pending or running, outbound
    changes left pending, unknown or sending — one task per account."""
    found = gates_sweep()
    for account_id in found.evaluate:
        evaluate_pending.delay(account_id)
    for account_id in found.flush:
        outbound_flush.apply_async((account_id,), kwargs={"reserved": False})
