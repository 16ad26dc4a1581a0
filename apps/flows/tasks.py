"""Celery tasks of the data paths: thin — fetch by id, call one flow. Their names are those they had
before the flows had a package of their own (a broker may hold messages under them; the routes of
``CELERY_TASK_ROUTES`` match them). The gates' tasks are in :mod:`apps.flows.gates`."""

from __future__ import annotations

from functools import partial

from celery import shared_task

from apps.core.broker import publish_all
from apps.flows.gates import evaluate_pending, sweep  # noqa: F401  (registers the gates' tasks)
from apps.flows.sync import account_events_sweep, account_sync
from apps.flows.webhooks import webhook_events_process
from apps.kommo.services.sync import account_ids_syncable
from apps.kommo.webhooks.intake import webhook_event_enqueue


@shared_task(name="apps.kommo.tasks.webhook_process")
def webhook_process(event_id: int) -> None:
    """Processes a stored webhook event (with the others of its account waiting); schedules the retry."""
    outcome = webhook_events_process(event_id=event_id)
    if outcome.retry is not None:
        retry_id, delay = outcome.retry
        webhook_event_enqueue(event_id=retry_id, countdown=delay)


@shared_task(name="apps.kommo.tasks.sync_incremental")
def sync_incremental() -> None:
    """Fans out one incremental sync per connected account (beat); one that cannot be queued does not
    stop the others."""
    publish_all(
        (partial(sync_account.delay, account_id), f"sync: the incremental sync of account {account_id}")
        for account_id in account_ids_syncable()
    )


@shared_task(name="apps.kommo.tasks.sync_account")
def sync_account(account_id: int, full: bool = False) -> None:
    """Syncs one account's mirror, then backfills its stage history when needed."""
    account_sync(account_id=account_id, full=full)


@shared_task(name="apps.kommo.tasks.sync_events")
def sync_events() -> None:
    """Fans out one events reconciliation per connected account (beat); one that cannot be queued does
    not stop the others."""
    publish_all(
        (partial(sync_events_account.delay, account_id), f"sync: the events sweep of account {account_id}")
        for account_id in account_ids_syncable()
    )


@shared_task(name="apps.kommo.tasks.sync_events_account")
def sync_events_account(account_id: int) -> None:
    """Reconciles one account's mirror from the events API."""
    account_events_sweep(account_id=account_id)
