"""Celery tasks of the Kommo boundary. Thin: each calls one service; ``webhook_*`` tasks are routed to the
``webhooks`` queue by name (``CELERY_TASK_ROUTES``), everything else here to ``kommo``. The task that
processes webhook events runs the whole data path, through the apps above the boundary: it is
``apps.flows.tasks.webhook_process`` (under its old name, ``apps.kommo.tasks.webhook_process``), and
so do the sync's and the events sweep's (``apps.kommo.tasks.sync_*``, in ``apps.flows.tasks``)."""

from __future__ import annotations

from celery import Task, shared_task
from django.conf import settings

from apps.kommo.services.outbound import (
    outbound_changes_drain,
    outbound_changes_flush,
    outbound_flush_release,
    outbound_flush_reserve,
    outbound_flush_unreserve,
)
from apps.kommo.webhooks.processing import (
    webhook_backlog,
    webhook_events_prune,
    webhook_events_sweep,
    webhook_moves_backlog,
)


@shared_task(name="apps.kommo.tasks.webhook_sweep")
def webhook_sweep() -> int:
    """Re-queues webhook events nobody is working on (beat, every minute)."""
    return len(webhook_events_sweep())


@shared_task(name="apps.kommo.tasks.webhook_prune")
def webhook_prune() -> int:
    """Deletes old processed and ignored webhook events (beat, daily)."""
    return webhook_events_prune(days=settings.KOMMO_WEBHOOK_KEEP_DAYS)


@shared_task(name="apps.kommo.tasks.outbound_flush", ignore_result=True)
def outbound_flush(account_id: int, *, reserved: bool = True) -> None:
    """Sends the account's outbound changes that are due (moves back, then tasks and notes, as
    ``outbound_drain_plan`` has it) and schedules itself for the rest — one scheduled flush per account.
    ``reserved``: this run was scheduled through ``outbound_flush_schedule`` (its reservation ends now)."""
    outbound_flush_run(account_id=account_id, reserved=reserved)


def outbound_flush_run(
    *, account_id: int, reserved: bool, undecided: int | None = None, task: Task | None = None
) -> None:
    """One scheduled flush of the account: its reservation ended (``reserved``), what the plan says is due
    sent, and ``task`` (:func:`outbound_flush` unless given) scheduled for the rest. ``undecided``: the moves
    still waiting for the gates' decision, when the caller knows (``outbound_drain_plan``)."""
    if reserved:
        outbound_flush_release(account_id=account_id)
    result = outbound_changes_flush(
        account_id=account_id,
        backlog=webhook_backlog(account_id=account_id),
        moves_backlog=webhook_moves_backlog(account_id=account_id),
        undecided=undecided,
    )
    if result.next_in is not None:
        outbound_flush_schedule(account_id=account_id, delay=result.next_in, task=task)


def outbound_flush_schedule(*, account_id: int, delay: float, task: Task | None = None) -> bool:
    """Schedules the account's next flush in ``delay`` seconds unless one is already due by then. When
    the task cannot be published (the broker is down), the reservation is given back before the error is
    raised, so that the next caller schedules a flush instead of trusting one that was never sent.
    ``task``: the flush to run, :func:`outbound_flush` unless a caller has its own that tells the plan
    more (the gates' flow: ``apps.flows.gates.gates_outbound_flush``, which knows the moves they have not
    decided yet); it takes the account's id and ``reserved``."""
    reserved = outbound_flush_reserve(account_id=account_id, delay=delay)
    if reserved is None:
        return False
    try:
        (task or outbound_flush).apply_async((account_id,), countdown=delay)
    except Exception:
        outbound_flush_unreserve(account_id=account_id, at=reserved)
        raise
    return True


@shared_task(name="apps.kommo.tasks.outbound_drain", ignore_result=True)
def outbound_drain(account_id: int, kinds: list[str] | None = None) -> None:
    """Send the account's due outbound changes (of ``kinds``, default all) in batches now, whatever the
    plan (the admin's retry); come back when retries fall due."""
    result = outbound_changes_drain(account_id=account_id, kinds=kinds)
    if result.retry_in is not None:
        outbound_drain.apply_async((account_id, kinds), countdown=result.retry_in)


@shared_task(name="apps.gates.tasks.drain_outbound", ignore_result=True)
def outbound_drain_queued_before(account_id: int, kinds: list[str] | None = None) -> None:
    """:func:`outbound_drain` under the name it had while the queue's admin lived in the gates, for the
    messages a broker may still hold under that name."""
    outbound_drain(account_id, kinds)
