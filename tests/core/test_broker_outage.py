"""Stored means acknowledged: with the broker down, webhooks and intake still answer 2xx once their row is
committed, and the sweepers publish for those rows when the broker is back."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from kombu.exceptions import OperationalError
from rest_framework.test import APIClient

from apps.intake import services as intake_services
from apps.intake import tasks as intake_tasks
from apps.intake.models import IntakeSource, IntakeSubmission
from apps.intake.services import intake_source_key_generate, intake_submissions_sweep
from apps.kommo.models import KommoAccount, WebhookEvent
from apps.kommo.webhooks import processing
from apps.kommo.webhooks.processing import webhook_events_sweep, webhook_events_sweep_unqueued
from tests.kommo.webhook_support import account_for, recording
from tests.support.services import CeleryWorker, RedisServer, free_port, wait_for

FORM = "application/x-www-form-urlencoded"
# A task deleted in Kommo: processed by the worker without any call to Kommo (the portal ignores it).
IGNORED_BODY = "task-delete.doc.form.txt"
BROKER_DOWN = "Error 111 connecting to redis://:hunter2@10.0.0.9:6379/0. Connection refused."

SUBMISSION = {
    "deal": {"name": "Acme — 40 seats"},
    "contacts": [{"name": "Ann Buyer", "emails": ["ann@acme.example"]}],
}


def source_for(account: KommoAccount) -> tuple[IntakeSource, str]:
    source = IntakeSource(account=account, name="Website form")
    return source, intake_source_key_generate(source=source)


def submit(key: str) -> Any:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return api.post("/api/v1/intake/leads", SUBMISSION, format="json")


def deliver(account: KommoAccount, body: bytes) -> Any:
    return Client().generic("POST", f"/webhooks/kommo/{account.webhook_token}/", body, content_type=FORM)


@pytest.fixture
def broker_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every publish from this process fails as it does with Redis stopped."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OperationalError(BROKER_DOWN)

    from config.celery import app

    monkeypatch.setattr(app, "send_task", refuse)
    monkeypatch.setattr(intake_tasks, "intake_submission_enqueue", refuse)


# -- the request side, with every publish failing ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_webhook_is_answered_200_and_kept_received_when_its_publish_fails(
    broker_down, caplog: pytest.LogCaptureFixture
) -> None:
    rec = recording(IGNORED_BODY)
    account = account_for(rec)

    with caplog.at_level(logging.WARNING, logger="apps.core.broker"):
        response = deliver(account, rec.body)

    assert response.status_code == 200
    [event] = WebhookEvent.objects.all()
    assert event.status == WebhookEvent.Status.RECEIVED
    [line] = [r.getMessage() for r in caplog.records if r.name == "apps.core.broker"]
    assert f"webhook event {event.pk} not published" in line
    assert "OperationalError" in line
    assert "hunter2" not in line


@pytest.mark.django_db(transaction=True)
def test_an_intake_submission_is_answered_202_and_kept_received_when_its_publish_fails(
    broker_down, caplog: pytest.LogCaptureFixture
) -> None:
    _, key = source_for(account_for(recording(IGNORED_BODY)))

    with caplog.at_level(logging.WARNING, logger="apps.core.broker"):
        response = submit(key)

    assert response.status_code == 202, response.content
    submission = IntakeSubmission.objects.get(pk=response.json()["id"])
    assert (submission.status, submission.attempts) == (IntakeSubmission.Status.RECEIVED, 0)
    [line] = [r.getMessage() for r in caplog.records if r.name == "apps.core.broker"]
    assert f"intake submission {submission.pk} not published" in line
    assert "hunter2" not in line


# -- the sweepers pick them up promptly ------------------------------------------------------------------


@pytest.fixture
def webhook_tasks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sent: list[int] = []
    monkeypatch.setattr(
        processing, "webhook_event_enqueue", lambda *, event_id, countdown=None: sent.append(event_id)
    )
    return sent


@pytest.mark.django_db
def test_the_sweeper_sends_one_task_per_account_whose_events_lost_their_publish(
    webhook_tasks, settings
) -> None:
    settings.KOMMO_WEBHOOK_UNQUEUED_AFTER_SECONDS = 10
    rec = recording(IGNORED_BODY)
    first, second = account_for(rec), account_for(rec, subdomain="other", kommo_id=None)
    now = timezone.now()
    lost = dt.timedelta(seconds=11)
    oldest = WebhookEvent.objects.create(account=first, body=rec.body, received_at=now - lost * 2)
    WebhookEvent.objects.create(account=first, body=rec.body, received_at=now - lost)
    other = WebhookEvent.objects.create(account=second, body=rec.body, received_at=now - lost)
    WebhookEvent.objects.create(account=second, body=rec.body, received_at=now)  # its publish is under way

    assert webhook_events_sweep_unqueued() == [oldest.pk, other.pk]
    assert webhook_tasks == [oldest.pk, other.pk]


@pytest.mark.django_db
def test_the_sweepers_run_every_30_seconds(settings) -> None:
    schedule = {entry["task"]: float(entry["schedule"]) for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert schedule["apps.kommo.tasks.webhook_sweep"] <= 30
    assert schedule["apps.intake.tasks.intake_submissions_sweep_task"] <= 30
    # A lost publish is found within a sweep and a wait: under a minute after the broker is back.
    assert schedule["apps.kommo.tasks.webhook_sweep"] + settings.KOMMO_WEBHOOK_UNQUEUED_AFTER_SECONDS < 60
    assert (
        schedule["apps.intake.tasks.intake_submissions_sweep_task"]
        + (intake_services.UNQUEUED_WAIT.total_seconds())
        < 60
    )


@pytest.mark.django_db
def test_the_intake_sweeper_queues_a_never_attempted_submission_after_seconds_and_a_retried_one_later(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks
) -> None:
    queued: list[int] = []
    monkeypatch.setattr(intake_tasks, "intake_submission_enqueue", queued.append)
    source, _ = source_for(account_for(recording(IGNORED_BODY)))
    now = timezone.now()
    seconds_ago = now - intake_services.UNQUEUED_WAIT - dt.timedelta(seconds=1)
    lost = IntakeSubmission.objects.create(source=source, idempotency_key="a")
    retrying = IntakeSubmission.objects.create(source=source, idempotency_key="b", attempts=1)
    IntakeSubmission.objects.filter(pk__in=[lost.pk, retrying.pk]).update(modified=seconds_ago)
    queued.clear()

    with django_capture_on_commit_callbacks(execute=True):
        assert intake_submissions_sweep() == [lost.pk]  # the retry's own task is due within its countdown

    assert queued == [lost.pk]


# -- with a real Redis stopped and started again, and a real worker ---------------------------------------


@pytest.mark.postgres
def test_with_redis_stopped_deliveries_are_acknowledged_and_processed_once_it_is_back(
    own_redis: RedisServer, worker_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = recording(IGNORED_BODY)
    # Kommo unreachable: the intake worker's first attempt fails as transient, which shows it ran.
    account = account_for(rec, base_url=f"http://127.0.0.1:{free_port()}")
    _, key = source_for(account)
    worker = CeleryWorker(
        broker_url=own_redis.url,
        database_url=worker_database_url,
        extra_env={"CELERY_VISIBILITY_TIMEOUT": "2"},
    )
    try:
        worker.start(timeout=120)
        own_redis.stop()

        delivered = deliver(account, rec.body)
        submitted = submit(key)

        assert delivered.status_code == 200
        assert submitted.status_code == 202, submitted.content
        [event] = WebhookEvent.objects.all()
        submission = IntakeSubmission.objects.get(pk=submitted.json()["id"])
        assert event.status == WebhookEvent.Status.RECEIVED
        assert (submission.status, submission.attempts) == (IntakeSubmission.Status.RECEIVED, 0)

        own_redis.start()  # the same port: the broker is back
        monkeypatch.setattr(intake_services, "UNQUEUED_WAIT", dt.timedelta(0))
        # What beat runs every 30 s, once the rows have waited past the publish they lost.
        assert webhook_events_sweep(older_than=dt.timedelta(0)) == [event.pk]
        assert intake_submissions_sweep() == [submission.pk]

        wait_for(
            lambda: WebhookEvent.objects.get(pk=event.pk).status == WebhookEvent.Status.IGNORED,
            timeout=60,
            message=f"the worker to process the webhook event\n{worker.log()}",
        )
        wait_for(
            lambda: IntakeSubmission.objects.get(pk=submission.pk).attempts >= 1,
            timeout=60,
            message=f"the worker to take up the submission\n{worker.log()}",
        )
    finally:
        worker.stop()
