"""The intake endpoint: authentication, problem details, storing first, idempotency, status, schema."""

from __future__ import annotations

import datetime as dt

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework import serializers

from apps.intake.models import IntakeSubmission
from apps.intake.serializers import IntakeSubmissionSerializer
from apps.stakeholders.models import Role
from tests.intake.conftest import submission_body

URL = "/api/v1/intake/leads"


def post(api, body, **headers):
    return api.post(
        URL, body, format="json", **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    )


def test_it_stores_the_submission_and_answers_202_with_a_status_url(
    api, source, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(api, submission_body())

    assert response.status_code == 202
    submission = IntakeSubmission.objects.get()
    assert response.json()["id"] == submission.pk
    assert response.json()["status"] == "received"
    assert response.json()["status_url"].endswith(f"/api/v1/intake/submissions/{submission.pk}")
    assert len(callbacks) == 1  # the worker is asked once the row is committed
    assert submission.source == source
    assert '"Ann@Acme.example "' in submission.raw_body


def test_it_normalises_emails_and_phones_and_applies_the_source_defaults(api, source):
    source.tags = ["inbound"]
    source.responsible_user_kommo_id = 777
    source.save()

    post(api, submission_body())

    normalized = IntakeSubmission.objects.get().normalized
    assert normalized["deal"] == {
        "name": "Acme — 40 seats",
        "price": 12000,
        "pipeline_id": 3001,
        "status_id": 4001,
        "responsible_user_id": 777,
        "tags": ["inbound", "webinar"],
    }
    assert normalized["contacts"][0]["emails"] == ["ann@acme.example"]
    assert normalized["contacts"][0]["phones"] == ["+14155550101"]


def test_an_invalid_body_gets_field_level_problem_details_and_is_kept_as_rejected(api):
    body = submission_body(
        contacts=[
            {"name": "Ann", "emails": ["not-an-email"], "role": "astronaut"},
            {"name": "", "phones": ["12"]},
        ]
    )
    del body["deal"]["name"]

    response = post(api, body)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "/api/docs/#problem-invalid-body"
    assert problem["status"] == 400
    assert {"title", "detail"} <= set(problem)
    assert set(problem["errors"]) == {
        "deal.name",
        "contacts.0.emails.0",
        "contacts.0.role",
        "contacts.1.name",
        "contacts.1.phones.0",
    }
    rejected = IntakeSubmission.objects.get(pk=problem["submission_id"])
    assert rejected.status == IntakeSubmission.Status.REJECTED
    assert rejected.payload == body
    assert rejected.idempotency_key is None
    assert rejected.validation_errors == problem["errors"]


def test_a_contact_without_email_or_phone_is_refused(api):
    response = post(api, submission_body(contacts=[{"name": "Nobody"}]))

    assert response.status_code == 400
    assert response.json()["errors"] == {"contacts.0": ["A contact needs at least one e-mail or phone."]}


def test_the_same_person_twice_in_one_submission_is_refused(api):
    contacts = [
        {"name": "Ann", "emails": ["ann@acme.example"]},
        {"name": "Ann B.", "emails": ["ANN@acme.example"]},
    ]

    response = post(api, submission_body(contacts=contacts))

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["contacts.1.emails"]


def test_a_body_that_is_not_json_is_kept_and_refused(api):
    response = api.post(URL, data="{not json", content_type="application/json")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["body"]
    assert IntakeSubmission.objects.get().raw_body == "{not json"


def test_a_wrong_key_gets_401_problem_details_and_nothing_is_stored(api, source):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer ik_{source.key_prefix}_wrong-secret")

    response = post(api, submission_body())

    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"] == 'Bearer realm="intake"'
    assert not IntakeSubmission.objects.exists()


def test_an_inactive_source_is_refused(api, source):
    source.is_active = False
    source.save()

    assert post(api, submission_body()).status_code == 401


def test_the_same_idempotency_key_answers_with_the_stored_submission(api):
    first = post(api, submission_body(), **{"Idempotency-Key": "form-42"})
    again = post(api, submission_body(), **{"Idempotency-Key": "form-42"})

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    assert IntakeSubmission.objects.count() == 1


def test_an_idempotency_key_reused_for_another_body_is_refused(api):
    first = post(api, submission_body(), **{"Idempotency-Key": "form-42"})
    other = post(api, submission_body(deal={"name": "Another deal"}), **{"Idempotency-Key": "form-42"})

    assert other.status_code == 422
    assert other.json()["submission_id"] == first.json()["id"]
    assert IntakeSubmission.objects.count() == 1


def test_without_a_key_the_same_content_is_one_submission_even_when_written_differently(api):
    first = post(api, submission_body())
    body = submission_body()
    body["contacts"][0]["emails"] = ["ann@acme.example"]
    body["contacts"][0]["phones"] = ["+1 415 555 0101"]
    again = post(api, body)

    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]


def test_without_a_key_the_same_content_after_the_window_is_a_new_submission(api, source):
    first = post(api, submission_body())
    IntakeSubmission.objects.filter(pk=first.json()["id"]).update(
        created=timezone.now() - dt.timedelta(hours=source.payload_window_hours, minutes=1)
    )

    again = post(api, submission_body())
    third = post(api, submission_body())

    assert again.status_code == 202
    assert third.json()["id"] == again.json()["id"]
    assert IntakeSubmission.objects.count() == 2


def test_a_rejected_submission_does_not_hold_its_idempotency_key(api):
    post(api, submission_body(contacts=[{"name": "Nobody"}]), **{"Idempotency-Key": "form-7"})

    corrected = post(api, submission_body(), **{"Idempotency-Key": "form-7"})

    assert corrected.status_code == 202


def test_a_source_reads_the_status_of_its_own_submissions_only(api, make_source):
    submission_id = post(api, submission_body()).json()["id"]
    other_api_key = make_source(name="Outreach tool")[1]

    mine = api.get(f"/api/v1/intake/submissions/{submission_id}")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {other_api_key}")
    theirs = api.get(f"/api/v1/intake/submissions/{submission_id}")

    assert mine.status_code == 200
    assert mine.json()["status"] == "received"
    assert theirs.status_code == 404
    assert theirs["Content-Type"] == "application/problem+json"


def test_the_openapi_schema_describes_the_intake_api(client, db):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    schema = response.json()
    assert set(schema["paths"]) >= {"/api/v1/intake/leads", "/api/v1/intake/submissions/{submission_id}"}
    operation = schema["paths"]["/api/v1/intake/leads"]["post"]
    assert {"202", "200", "400", "422"} <= set(operation["responses"])
    assert "Idempotency-Key" in [parameter["name"] for parameter in operation["parameters"]]
    assert schema["components"]["securitySchemes"]["IntakeApiKey"]["scheme"] == "bearer"


def test_the_docs_page_renders_the_schema_without_external_assets(client, db):
    response = client.get("/api/docs/")

    html = response.content.decode()
    assert response.status_code == 200
    assert "/api/v1/intake/leads" in html
    assert 'id="problem-invalid-body"' in html
    assert "cdn." not in html and "<script" not in html


def test_an_accepted_submission_costs_the_key_lookup_and_the_insert_and_nothing_else(api):
    post(api, submission_body(deal={"name": "First"}))  # the process reads the role codes once

    with CaptureQueriesContext(connection) as queries:
        response = post(api, submission_body(deal={"name": "Second"}))

    assert response.status_code == 202
    statements = [
        query["sql"].split()[0] + " " + query["sql"].split('"')[1]
        for query in queries.captured_queries
        if not query["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "BEGIN", "COMMIT"))
    ]
    assert statements == ["SELECT intake_intakesource", "INSERT intake_intakesubmission"]


def test_a_role_added_in_this_process_is_accepted_at_once(api):
    assert post(api, submission_body()).status_code == 202
    Role.objects.create(code="champion", label="Champion")
    body = submission_body(deal={"name": "Another"})
    body["contacts"][1]["role"] = "champion"

    assert post(api, body).status_code == 202


def test_the_written_out_answer_is_what_the_declared_fields_give(api, source):
    submission = IntakeSubmission.objects.get(pk=post(api, submission_body()).json()["id"])
    submission.status = IntakeSubmission.Status.DONE
    submission.finished_at = timezone.now()
    submission.attempts = 2
    submission.kommo_lead_id, submission.kommo_company_id = 10, 11
    submission.kommo_contact_ids = [20, 21]
    submission.contact_outcomes = [
        {
            "index": 0,
            "name": "Ann Buyer",
            "role": "decision_maker",
            "is_main": True,
            "kommo_id": 20,
            "outcome": "linked_existing",
            "found_by": "mirror",
            "matched": "email:ann@acme.example",
            "filled": ["phones"],
            "fill_pending": False,
            "role_recorded": ["contact_field"],
        }
    ]
    submission.kommo_errors = [{"request_id": "0", "code": "X", "path": "name", "detail": "bad"}]
    serializer = IntakeSubmissionSerializer(submission)

    assert serializer.to_representation(submission) == serializers.ModelSerializer.to_representation(
        serializer, submission
    )
