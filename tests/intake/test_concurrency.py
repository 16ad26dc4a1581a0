"""Twenty submissions at the same moment, on PostgreSQL, against the live Kommo sandbox over HTTP."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from apps.intake.models import IntakeSource, IntakeSubmission
from apps.intake.services import intake_source_key_generate, intake_submission_process
from kommo_sandbox.server import SandboxServer
from tests.kommo.sandbox_support import account_for, api_requests

pytestmark = [pytest.mark.postgres, pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]

SHARED_EMAIL = "ann@shared.example"
# Outside the demo seed's fictional 555-01xx numbers: a seeded contact holding Ann's phone would rightly be
# linked by the submissions that search by phone before Ann exists.
SHARED_PHONE = "+1 415 555 0242"
DEALS = 10


def sandbox_contacts_with(server: SandboxServer, value: str) -> int:
    account = server.store.account(server.credentials["account_id"])
    return sum(
        1
        for contact in account.contacts.values()
        if not contact.is_deleted
        and any(
            str(item.get("value", "")).lower() == value
            for field in contact.custom_fields_values
            for item in field["values"]
        )
    )


def sandbox_leads_named(server: SandboxServer, prefix: str) -> int:
    account = server.store.account(server.credentials["account_id"])
    return sum(1 for lead in account.leads.values() if lead.name.startswith(prefix) and not lead.is_deleted)


def body(deal: int) -> dict[str, Any]:
    shared: dict[str, Any] = {
        "name": "Ann Shared",
        "emails": [SHARED_EMAIL.upper()],
        "role": "decision_maker",
    }
    if deal % 2:
        shared["phones"] = [SHARED_PHONE]
    return {
        "deal": {"name": f"Concurrent deal {deal}"},
        "company": {"name": f"Company {deal}"},
        "contacts": [shared, {"name": f"Person {deal}", "emails": [f"person{deal}@unique.example"]}],
    }


def run_at_once(count: int, work) -> list[Any]:  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def runner(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = work(index)
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=runner, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return results


def test_twenty_concurrent_submissions_create_one_contact_per_person_and_one_deal_per_key(demo):
    account = account_for(demo)
    source = IntakeSource(account=account, name="Load test", default_phone_region="US")
    key = intake_source_key_generate(source=source)
    since = demo.app.request_log.last_seq

    def submit_and_process(index: int) -> int:
        deal = index % DEALS  # every deal is sent twice, with the same Idempotency-Key
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        response = client.post(
            "/api/v1/intake/leads", body(deal), format="json", HTTP_IDEMPOTENCY_KEY=f"deal-{deal}"
        )
        assert response.status_code in (200, 202), response.content
        intake_submission_process(submission_id=response.json()["id"])
        return response.json()["id"]

    ids = run_at_once(2 * DEALS, submit_and_process)

    assert len(set(ids)) == DEALS
    submissions = IntakeSubmission.objects.filter(source=source)
    assert submissions.count() == DEALS
    assert set(submissions.values_list("status", flat=True)) == {IntakeSubmission.Status.DONE}
    assert sandbox_leads_named(demo, "Concurrent deal ") == DEALS
    assert sandbox_contacts_with(demo, SHARED_EMAIL) == 1
    assert sandbox_contacts_with(demo, "+14155550242") == 1
    for deal in range(DEALS):
        assert sandbox_contacts_with(demo, f"person{deal}@unique.example") == 1
    shared_ids = {submission.kommo_contact_ids[0] for submission in submissions}
    assert len(shared_ids) == 1
    calls = [f"{entry['method']} {entry['path']}" for entry in api_requests(demo, since)]
    assert calls.count("POST /api/v4/leads/complex") == DEALS
    assert sum(call.endswith("/link") for call in calls) == DEALS
    searches = [entry for entry in api_requests(demo, since) if "query=" in entry["query"]]
    # Ann is searched for by the first submission that holds her lock only; each other person once.
    assert DEALS + 1 <= len(searches) <= DEALS + 2
    # The deals' marker field is looked up and created once, however many submissions need it at once;
    # nothing is read back for the mirror.
    assert calls.count("GET /api/v4/leads/custom_fields") == 1
    assert calls.count("POST /api/v4/leads/custom_fields") == 1
    # At most one fill: Ann's phone, when a submission without it created her first.
    assert calls.count("PATCH /api/v4/contacts") <= 1
    writes = calls.count("POST /api/v4/contacts") + calls.count("PATCH /api/v4/contacts")
    assert len(calls) == len(searches) + writes + 2 * DEALS + 2
