"""Celery tasks of the data paths: thin — fetch by id, call one flow. Their names are those they had
before the flows had a package of their own (a broker may hold messages under them; the routes of
``CELERY_TASK_ROUTES`` match them). The gates' tasks are in :mod:`apps.flows.gates`."""

from __future__ import annotations

from celery import shared_task

from apps.flows.gates import evaluate_pending, sweep  # noqa: F401  (registers the gates' tasks)
from apps.flows.webhooks import webhook_events_process
from apps.kommo.webhooks.intake import webhook_event_enqueue


@shared_task(name="apps.kommo.tasks.webhook_process")
def webhook_process(event_id: int) -> None:
    """Processes a stored webhook event (with the others of its account waiting); schedules the retry."""
    outcome = webhook_events_process(event_id=event_id)
    if outcome.retry is not None:
        retry_id, delay = outcome.retry
        webhook_event_enqueue(event_id=retry_id, countdown=delay)
