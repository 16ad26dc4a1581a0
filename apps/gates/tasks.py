"""Celery tasks of the gates (queue ``kommo``): thin — call one service, then decide what runs next."""

from __future__ import annotations

from celery import shared_task

from apps.gates.services import gate_evaluations_run
from apps.kommo.services.outbound import outbound_changes_drain


@shared_task(name="apps.gates.tasks.evaluate_pending", ignore_result=True)
def evaluate_pending(account_id: int) -> None:
    """Evaluate the account's pending moves; drain what they queued; come back for what is left."""
    run = gate_evaluations_run(account_id=account_id)
    if run.outbound:
        drain_outbound.delay(account_id)
    if run.retry_in is not None:
        evaluate_pending.apply_async((account_id,), countdown=run.retry_in)


@shared_task(name="apps.gates.tasks.drain_outbound", ignore_result=True)
def drain_outbound(account_id: int) -> None:
    """Send the account's due outbound changes in batches; come back when retries fall due."""
    result = outbound_changes_drain(account_id=account_id)
    if result.retry_in is not None:
        drain_outbound.apply_async((account_id,), countdown=result.retry_in)
