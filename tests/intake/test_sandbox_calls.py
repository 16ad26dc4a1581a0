"""The calls one submission costs, counted in the Kommo sandbox's request log."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.intake.models import IntakeSubmission
from apps.intake.services import intake_submission_process
from apps.kommo.models.mirror import Contact, Lead, LeadContact
from kommo_sandbox.server import SandboxServer
from tests.intake.conftest import submission_body
from tests.kommo.sandbox_support import account_for, api_requests

pytestmark = pytest.mark.sandbox


def calls_since(server: SandboxServer, since: int) -> list[str]:
    out = []
    for entry in api_requests(server, since):
        path = "/".join("{id}" if part.isdigit() else part for part in entry["path"].split("/"))
        out.append(f"{entry['method']} {path}" + ("?query" if "query=" in entry["query"] else ""))
    return out


def test_a_submission_costs_its_searches_one_contacts_post_one_complex_and_one_link_and_nothing_else(
    demo, make_source
):
    account = account_for(demo)
    pipeline = next(iter(demo.store.account(demo.credentials["account_id"]).pipelines.values()))
    stage = pipeline.first_working_status()
    _, key = make_source(account=account, pipeline_kommo_id=pipeline.id, status_kommo_id=stage.id)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    def submit_and_process(body: dict) -> IntakeSubmission:
        response = client.post("/api/v1/intake/leads", body, format="json")
        assert response.status_code == 202, response.content
        intake_submission_process(submission_id=response.json()["id"])
        return IntakeSubmission.objects.get(pk=response.json()["id"])

    submit_and_process(
        submission_body(deal={"name": "Warm-up"}, contacts=[{"name": "W", "emails": ["w@w.example"]}])
    )
    since = demo.app.request_log.last_seq

    first = submit_and_process(submission_body())

    assert first.status == IntakeSubmission.Status.DONE
    assert calls_since(demo, since) == [
        "GET /api/v4/contacts?query",  # ann@acme.example
        "GET /api/v4/contacts?query",  # +14155550101
        "GET /api/v4/contacts?query",  # lee@acme.example
        "POST /api/v4/contacts",  # Lee (the complex call takes one contact: Ann)
        "POST /api/v4/leads/complex",
        "POST /api/v4/leads/{id}/link",
    ]
    lead = Lead.objects.get(account=account, kommo_id=first.kommo_lead_id)
    assert sorted(LeadContact.objects.filter(lead=lead).values_list("contact_kommo_id", flat=True)) == sorted(
        first.kommo_contact_ids
    )
    since = demo.app.request_log.last_seq

    second = submit_and_process(submission_body(deal={"name": "Acme — renewal"}))

    assert calls_since(demo, since) == ["POST /api/v4/leads/complex", "POST /api/v4/leads/{id}/link"]
    assert second.kommo_contact_ids == first.kommo_contact_ids
    assert Contact.objects.filter(account=account, kommo_id__in=first.kommo_contact_ids).count() == 2
