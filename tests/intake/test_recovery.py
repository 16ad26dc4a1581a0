"""Recovering lost work: tasks that never ran and workers that died (the sweeper)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from apps.intake import tasks
from apps.intake.models import IntakeSubmission
from apps.intake.services import STALE_CLAIM, STALE_WAIT, SWEEP_MAX_ATTEMPTS, intake_submissions_sweep
from config.celery import app as celery_app
from tests.intake.conftest import submission_body

Status = IntakeSubmission.Status
URL = "/api/v1/intake/leads"


def submit(api, body: dict[str, Any] | None = None) -> IntakeSubmission:
    response = api.post(URL, body or submission_body(), format="json")
    assert response.status_code == 202, response.content
    return IntakeSubmission.objects.get(pk=response.json()["id"])


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ids of the submissions handed to the processing task."""
    ids: list[int] = []
    monkeypatch.setattr(tasks.intake_submission_process_task, "delay", ids.append)
    return ids


# -- the sweeper ------------------------------------------------------------------------------------------


def test_the_sweeper_queues_again_what_waits_longer_than_any_retry_and_claims_left_by_dead_workers(
    api, queued, django_capture_on_commit_callbacks
):
    waiting, claimed, fresh, done = (
        submit(api, submission_body(deal={"name": f"Deal {n}"})) for n in range(4)
    )
    now = timezone.now()
    IntakeSubmission.objects.filter(pk=waiting.pk).update(modified=now - STALE_WAIT - dt.timedelta(seconds=1))
    IntakeSubmission.objects.filter(pk=claimed.pk).update(
        status=Status.PROCESSING, attempts=1, modified=now - STALE_CLAIM - dt.timedelta(seconds=1)
    )
    IntakeSubmission.objects.filter(pk=done.pk).update(
        status=Status.DONE, modified=now - dt.timedelta(days=1)
    )
    queued.clear()

    with django_capture_on_commit_callbacks(execute=True):
        swept = intake_submissions_sweep()

    assert sorted(swept) == sorted(queued) == sorted([waiting.pk, claimed.pk])
    assert set(IntakeSubmission.objects.filter(pk__in=swept).values_list("status", flat=True)) == {
        Status.RECEIVED
    }
    assert IntakeSubmission.objects.get(pk=fresh.pk).status == Status.RECEIVED
    assert IntakeSubmission.objects.get(pk=done.pk).status == Status.DONE
    with django_capture_on_commit_callbacks(execute=True):
        assert intake_submissions_sweep() == []  # queued again just now: left alone until the next wait


def test_the_sweeper_fails_a_submission_whose_worker_keeps_dying(
    api, queued, django_capture_on_commit_callbacks
):
    submission = submit(api)
    IntakeSubmission.objects.filter(pk=submission.pk).update(
        status=Status.PROCESSING, attempts=SWEEP_MAX_ATTEMPTS, modified=timezone.now() - STALE_CLAIM * 2
    )
    queued.clear()

    with django_capture_on_commit_callbacks(execute=True):
        assert intake_submissions_sweep() == []

    submission.refresh_from_db()
    assert submission.status == Status.FAILED
    assert "Gave up after" in submission.error
    assert queued == []


def test_the_sweeper_task_runs_on_beat_in_the_kommo_queue(api, queued, django_capture_on_commit_callbacks):
    entry = next(
        entry
        for entry in settings.CELERY_BEAT_SCHEDULE.values()
        if entry["task"] == "apps.intake.tasks.intake_submissions_sweep_task"
    )
    assert entry["task"] in celery_app.tasks
    assert float(entry["schedule"]) <= STALE_CLAIM.total_seconds()  # type: ignore[arg-type]
    submission = submit(api)
    IntakeSubmission.objects.filter(pk=submission.pk).update(modified=timezone.now() - STALE_WAIT * 2)
    queued.clear()

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.intake_submissions_sweep_task.apply().get() == 1

    assert queued == [submission.pk]
