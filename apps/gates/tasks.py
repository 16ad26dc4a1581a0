"""Celery tasks of the gates (queue ``kommo``): thin — call one service, then decide what runs next."""

from __future__ import annotations

from celery import shared_task

from apps.gates.services import FOLLOW_UP_SECONDS, gate_evaluations_run
from apps.kommo.models import OutboundChange
from apps.kommo.services.outbound import outbound_changes_drain


@shared_task(name="apps.gates.tasks.evaluate_pending", ignore_result=True)
def evaluate_pending(account_id: int) -> None:
    """Evaluate the account's pending moves. The moves back are sent at once; the tasks and notes follow
    a moment later, so that those of a burst go out together and stay off the urgent path."""
    run = gate_evaluations_run(account_id=account_id)
    if run.outbound:
        drain_outbound.delay(account_id, [OutboundChange.Kind.LEAD_STATUS])
    if run.follow_up:
        drain_outbound.apply_async((account_id,), countdown=FOLLOW_UP_SECONDS)
    if run.retry_in is not None:
        evaluate_pending.apply_async((account_id,), countdown=run.retry_in)


@shared_task(name="apps.gates.tasks.drain_outbound", ignore_result=True)
def drain_outbound(account_id: int, kinds: list[str] | None = None) -> None:
    """Send the account's due outbound changes (of ``kinds``, default all) in batches; come back when
    retries fall due."""
    result = outbound_changes_drain(account_id=account_id, kinds=kinds)
    if result.retry_in is not None:
        drain_outbound.apply_async((account_id, kinds), countdown=result.retry_in)
