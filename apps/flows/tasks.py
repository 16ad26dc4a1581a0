"""Celery tasks of the data paths: thin — fetch by id, call one flow. Their names are those they had
before the flows had a package of their own (a broker may hold messages under them; the routes of
``CELERY_TASK_ROUTES`` match them). The gates' tasks are in :mod:`apps.flows.gates`."""

from __future__ import annotations

from functools import partial

from celery import shared_task

from apps.core.broker import publish_all
from apps.flows.gates import evaluate_pending, sweep  # noqa: F401  (registers the gates' tasks)
from apps.flows.intake import intake_submission_process
from apps.flows.sync import account_events_sweep, account_sync
from apps.flows.webhooks import webhook_events_process
from apps.intake.services import intake_submission_fail
from apps.kommo.exceptions import KommoError, KommoRateLimited
from apps.kommo.services.sync import account_ids_syncable
from apps.kommo.webhooks.intake import webhook_event_enqueue

# Retries of an intake submission whose Kommo errors are transient, before it is failed for the admin.
MAX_RETRIES = 6


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


@shared_task(bind=True, name="apps.intake.tasks.intake_submission_process_task", max_retries=MAX_RETRIES)
def intake_submission_process_task(self, submission_id: int) -> None:  # type: ignore[no-untyped-def]
    """Processes a stored intake submission. Transient Kommo errors (429, 5xx, timeouts) are retried with
    backoff; after the last retry the submission is failed, to be retried from the admin."""
    try:
        intake_submission_process(submission_id=submission_id)
    except KommoError as error:
        if self.request.retries >= MAX_RETRIES:
            intake_submission_fail(submission_id=submission_id, error=str(error))
            return
        delay = error.retry_after if isinstance(error, KommoRateLimited) and error.retry_after else None
        raise self.retry(countdown=delay or min(600, 10 * 2**self.request.retries)) from error
