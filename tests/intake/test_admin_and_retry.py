"""Admin: API keys shown once, submissions with their deal, retrying failures; the task's retries."""

from __future__ import annotations

import pytest

from apps.flows.intake import intake_submission_process
from apps.flows.tasks import MAX_RETRIES, intake_submission_process_task
from apps.intake.models import IntakeSource, IntakeSubmission
from apps.intake.selectors import intake_source_by_key
from tests.intake.conftest import submission_body
from tests.kommo.payloads import payload


@pytest.fixture
def admin_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(user)
    return client


def submit(api) -> IntakeSubmission:
    return IntakeSubmission.objects.get(
        pk=api.post("/api/v1/intake/leads", submission_body(), format="json").json()["id"]
    )


def test_a_source_created_in_the_admin_shows_its_key_once_and_keeps_only_a_hash(admin_client, account):
    response = admin_client.post(
        "/admin/intake/intakesource/add/",
        {
            "name": "Partner form",
            "account": account.pk,
            "tags": "[]",
            "payload_window_hours": 24,
            "is_active": "on",
        },
        follow=True,
    )

    message = next(str(m) for m in response.context["messages"])
    key = message.split(": ", 1)[1].split(" ")[0]
    source = IntakeSource.objects.get(name="Partner form")
    assert key.startswith(f"ik_{source.key_prefix}_")
    assert key not in source.key_hash and intake_source_by_key(key=key) == source
    page = admin_client.get(f"/admin/intake/intakesource/{source.pk}/change/").content.decode()
    assert key not in page


def test_generating_a_new_key_in_the_admin_retires_the_old_one(admin_client, source_and_key):
    source, old_key = source_and_key

    admin_client.post(
        "/admin/intake/intakesource/",
        {"action": "generate_key", "_selected_action": [source.pk]},
        follow=True,
    )

    assert intake_source_by_key(key=old_key) is None


def test_a_failed_submission_is_retried_from_the_admin_and_resumes_without_a_second_deal(
    admin_client, api, kommo, django_capture_on_commit_callbacks
):
    submission = submit(api)
    kommo.answer_next(r"/api/v4/leads/\d+/link", 400, payload("error-validation.json"))
    intake_submission_process(submission_id=submission.pk)
    submission.refresh_from_db()
    assert submission.status == IntakeSubmission.Status.FAILED
    assert submission.kommo_lead_id is not None

    with django_capture_on_commit_callbacks() as callbacks:
        admin_client.post(
            "/admin/intake/intakesubmission/",
            {"action": "retry", "_selected_action": [submission.pk]},
            follow=True,
        )
    submission.refresh_from_db()
    assert submission.status == IntakeSubmission.Status.RECEIVED
    assert len(callbacks) == 1
    intake_submission_process(submission_id=submission.pk)

    submission.refresh_from_db()
    assert submission.status == IntakeSubmission.Status.DONE
    assert submission.attempts == 2
    assert kommo.calls.count("POST /api/v4/leads/complex") == 1
    assert sum(call.endswith("/link") for call in kommo.calls) == 2


def test_the_admin_retries_failed_submissions_only(admin_client, api):
    submission = submit(api)

    admin_client.post(
        "/admin/intake/intakesubmission/", {"action": "retry", "_selected_action": [submission.pk]}
    )

    submission.refresh_from_db()
    assert submission.status == IntakeSubmission.Status.RECEIVED
    assert submission.attempts == 0


def test_the_submission_page_shows_the_outcome_and_links_the_deal_in_kommo(admin_client, api, kommo):
    submission = submit(api)
    intake_submission_process(submission_id=submission.pk)
    submission.refresh_from_db()

    page = admin_client.get(f"/admin/intake/intakesubmission/{submission.pk}/change/").content.decode()

    assert f"https://example.kommo.com/leads/detail/{submission.kommo_lead_id}" in page
    assert "Lee Lawyer" in page and "created" in page


def test_a_rate_limited_submission_is_retried_by_the_task_and_creates_one_deal(api, kommo):
    submission = submit(api)
    kommo.answer_next("/api/v4/leads/complex", 429, payload("error-429.json"))

    intake_submission_process_task.apply(args=[submission.pk])

    submission.refresh_from_db()
    assert submission.status == IntakeSubmission.Status.DONE
    assert submission.attempts == 2
    assert kommo.calls.count("POST /api/v4/leads/complex") == 2  # refused once, then created
    assert len(kommo.leads) == 1


def test_a_submission_still_refused_after_the_tasks_last_retry_is_failed_for_the_admin(api, kommo):
    submission = submit(api)
    kommo.answer_next("/api/v4/leads/complex", 429, payload("error-429.json"))

    intake_submission_process_task.apply(args=[submission.pk], retries=MAX_RETRIES)

    submission.refresh_from_db()
    assert submission.status == IntakeSubmission.Status.FAILED
    assert submission.error and submission.finished_at is not None
    assert kommo.calls.count("POST /api/v4/leads/complex") == 1
    assert not kommo.leads
