"""Celery tasks of the intake (queue ``kommo``). The processing task is the intake flow's
(``apps.flows.tasks``, under its old name ``apps.intake.tasks.intake_submission_process_task``): the intake
publishes it by name."""

from __future__ import annotations

from celery import current_app, shared_task

from apps.intake import services

PROCESS_TASK = "apps.intake.tasks.intake_submission_process_task"


def intake_submission_enqueue(submission_id: int) -> None:
    """Sends the processing task for one stored submission (routed to the ``kommo`` queue by its name)."""
    current_app.send_task(PROCESS_TASK, args=(submission_id,))


@shared_task(name="apps.intake.tasks.intake_submissions_sweep_task")
def intake_submissions_sweep_task() -> int:
    """Queues again the submissions whose task was lost or whose worker died (beat, every 30 s)."""
    return len(services.intake_submissions_sweep())
