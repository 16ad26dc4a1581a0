"""Recovering lost work: a worker that dies after Kommo created the deal, tasks that never ran (the
sweeper), and the deal field that carries the marker."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from apps.intake import tasks
from apps.intake.models import IntakeSubmission
from apps.intake.services import (
    STALE_CLAIM,
    STALE_WAIT,
    SWEEP_MAX_ATTEMPTS,
    intake_submission_process,
    intake_submissions_sweep,
)
from apps.kommo.client import KommoClient
from apps.kommo.exceptions import KommoServerError
from apps.kommo.models.mirror import CustomField, Lead
from config.celery import app as celery_app
from kommo_sandbox.server import SandboxServer
from tests.intake.conftest import submission_body
from tests.kommo.sandbox_support import account_for, api_requests
from tests.support.fake_kommo import MARKER_FIELD_ID

Status = IntakeSubmission.Status
URL = "/api/v1/intake/leads"


class WorkerDied(Exception):
    """Stands for the worker process dying: nothing after it runs, nothing is recorded."""


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


def crash_after_complex(submission: IntakeSubmission, monkeypatch: pytest.MonkeyPatch) -> None:
    real = KommoClient.leads_complex_create

    def create_then_die(self: KommoClient, items: Any) -> Any:
        real(self, items)
        raise WorkerDied

    with monkeypatch.context() as patch:
        patch.setattr(KommoClient, "leads_complex_create", create_then_die)
        with pytest.raises(WorkerDied):
            intake_submission_process(submission_id=submission.pk)


def sweep_later(django_capture_on_commit_callbacks: Any, after: dt.timedelta) -> list[int]:
    with django_capture_on_commit_callbacks(execute=True):
        return intake_submissions_sweep(now=timezone.now() + after)


# -- the worker dies between Kommo's answer and the commit ------------------------------------------------


def test_a_retry_after_the_worker_died_past_the_complex_call_adopts_the_deal_instead_of_creating_another(
    api, kommo, queued, monkeypatch, django_capture_on_commit_callbacks
):
    submission = submit(api)
    crash_after_complex(submission, monkeypatch)
    submission.refresh_from_db()
    assert (submission.status, submission.kommo_lead_id) == (Status.PROCESSING, None)
    assert submission.kommo_marker
    (created_id,) = kommo.leads
    calls_before = len(kommo.calls)

    assert sweep_later(django_capture_on_commit_callbacks, STALE_CLAIM + dt.timedelta(minutes=1)) == [
        submission.pk
    ]
    intake_submission_process(submission_id=queued[-1])

    submission.refresh_from_db()
    assert submission.status == Status.DONE
    assert submission.kommo_lead_id == created_id
    assert len(kommo.leads) == 1
    retry_calls = kommo.calls[calls_before:]
    assert retry_calls == [
        f"GET /api/v4/leads?query={submission.kommo_marker}&with=contacts",
        f"POST /api/v4/leads/{created_id}/link",
    ]
    main = submission.contact_outcomes[0]
    assert (main["kommo_id"], main["outcome"]) == (
        kommo.leads[created_id]["_embedded"]["contacts"][0]["id"],
        "created",
    )
    assert Lead.objects.filter(kommo_id=created_id).exists()


def test_a_retry_whose_complex_call_never_reached_kommo_creates_the_deal_once(api, kommo):
    submission = submit(api)
    kommo.answer_next("/api/v4/leads/complex", 503, {"title": "Service Unavailable", "status": 503})
    with pytest.raises(KommoServerError):  # transient: raised for the task to retry
        intake_submission_process(submission_id=submission.pk)
    submission.refresh_from_db()
    assert (submission.status, submission.kommo_lead_id) == (Status.RECEIVED, None)

    intake_submission_process(submission_id=submission.pk)

    submission.refresh_from_db()
    assert submission.status == Status.DONE
    assert len(kommo.leads) == 1
    marker_searches = [call for call in kommo.calls if call.startswith("GET /api/v4/leads?query=")]
    assert marker_searches == [f"GET /api/v4/leads?query={submission.kommo_marker}&with=contacts"]


def test_a_deal_whose_marker_only_contains_the_submissions_is_not_adopted(api, kommo, monkeypatch):
    submission = submit(api)
    crash_after_complex(submission, monkeypatch)
    submission.refresh_from_db()
    (lead,) = kommo.leads.values()
    lead["custom_fields_values"][0]["values"] = [{"value": f"{submission.kommo_marker}0"}]
    IntakeSubmission.objects.filter(pk=submission.pk).update(status=Status.RECEIVED)

    intake_submission_process(submission_id=submission.pk)

    submission.refresh_from_db()
    assert submission.kommo_lead_id != lead["id"]
    assert len(kommo.leads) == 2


# -- the same against the sandbox, over HTTP --------------------------------------------------------------


@pytest.mark.sandbox
def test_against_the_sandbox_a_crash_after_the_complex_call_and_a_retry_leave_exactly_one_deal(
    demo, make_source, queued, monkeypatch, django_capture_on_commit_callbacks
):
    account = account_for(demo)
    _, key = make_source(account=account, pipeline_kommo_id=None, status_kommo_id=None)
    api = _client(key)
    since = demo.app.request_log.last_seq
    submission = submit(api, submission_body(deal={"name": "Crash-test deal"}))

    crash_after_complex(submission, monkeypatch)
    assert _sandbox_leads_named(demo, "Crash-test deal") == 1
    sweep_later(django_capture_on_commit_callbacks, STALE_CLAIM + dt.timedelta(minutes=1))
    intake_submission_process(submission_id=queued[-1])

    submission.refresh_from_db()
    assert submission.status == Status.DONE
    assert _sandbox_leads_named(demo, "Crash-test deal") == 1
    stored = demo.store.account(demo.credentials["account_id"]).leads[submission.kommo_lead_id]
    assert stored.name == "Crash-test deal"
    calls = [f"{entry['method']} {entry['path']}" for entry in api_requests(demo, since)]
    assert calls.count("POST /api/v4/leads/complex") == 1
    assert calls.count("POST /api/v4/leads/custom_fields") == 1  # the marker's field, once per account
    main_id = submission.kommo_contact_ids[0]
    assert stored.id in demo.store.account(demo.credentials["account_id"]).links.ids(
        ("contacts", main_id), "leads"
    )


def _client(key: str) -> Any:
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def _sandbox_leads_named(server: SandboxServer, name: str) -> int:
    account = server.store.account(server.credentials["account_id"])
    return sum(1 for lead in account.leads.values() if lead.name == name and not lead.is_deleted)


# -- the marker's field --------------------------------------------------------------------------------


def test_the_marker_field_is_created_once_when_kommo_has_none(api, kommo, account):
    CustomField.objects.filter(account=account).delete()

    first = submit(api)
    intake_submission_process(submission_id=first.pk)
    second = submit(api, submission_body(deal={"name": "Another deal"}))
    intake_submission_process(submission_id=second.pk)

    assert kommo.calls.count("GET /api/v4/leads/custom_fields") == 1
    assert kommo.calls.count("POST /api/v4/leads/custom_fields") == 1
    created = kommo.body(kommo.calls.index("POST /api/v4/leads/custom_fields"))
    assert created == [{"name": "Intake submission", "type": "text", "code": "PORTAL_INTAKE"}]
    field = CustomField.objects.get(account=account, code="PORTAL_INTAKE")
    complex_items = [
        kommo.body(i)[0] for i, call in enumerate(kommo.calls) if call.endswith("/leads/complex")
    ]
    assert [item["custom_fields_values"][0]["field_id"] for item in complex_items] == [field.kommo_id] * 2


def test_a_marker_field_kommo_already_has_is_mirrored_not_created_again(api, kommo, account):
    CustomField.objects.filter(account=account).delete()
    kommo.add_marker_field()

    intake_submission_process(submission_id=submit(api).pk)

    assert "POST /api/v4/leads/custom_fields" not in kommo.calls
    assert CustomField.objects.get(account=account, code="PORTAL_INTAKE").kommo_id == MARKER_FIELD_ID


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
