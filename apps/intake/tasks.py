"""Thin Celery tasks of the intake (queue ``kommo``): fetch by id, call one service, decide retry."""

from __future__ import annotations

from celery import shared_task

from apps.intake import services
from apps.kommo.exceptions import KommoError, KommoRateLimited

MAX_RETRIES = 6


@shared_task(bind=True, name="apps.intake.tasks.intake_submission_process_task", max_retries=MAX_RETRIES)
def intake_submission_process_task(self, submission_id: int) -> None:  # type: ignore[no-untyped-def]
    """Transient Kommo errors (429, 5xx, timeouts) are retried with backoff; after the last retry the
    submission is failed, to be retried from the admin."""
    try:
        services.intake_submission_process(submission_id=submission_id)
    except KommoError as error:
        if self.request.retries >= MAX_RETRIES:
            services.intake_submission_fail(submission_id=submission_id, error=str(error))
            return
        delay = error.retry_after if isinstance(error, KommoRateLimited) and error.retry_after else None
        raise self.retry(countdown=delay or min(600, 10 * 2**self.request.retries)) from error


@shared_task(name="apps.intake.tasks.intake_submissions_sweep_task")
def intake_submissions_sweep_task() -> int:
    """Queues again the submissions whose task was lost or whose worker died (beat, every 30 s)."""
    return len(services.intake_submissions_sweep())
