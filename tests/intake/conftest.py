"""Fixtures of the intake tests: an account, a source with its key, an API client, the suite's fake Kommo."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import responses
from rest_framework.test import APIClient

from apps.intake.models import IntakeSource
from apps.intake.selectors import active_role_codes_forget
from apps.intake.services import intake_source_key_generate
from apps.kommo import types
from apps.kommo.models import KommoAccount
from apps.kommo.services.mirror import custom_fields_upsert_from_kommo
from tests.factories import KommoAccountFactory
from tests.support.fake_kommo import BASE_URL, MARKER_FIELD_ID, FakeKommo

LONG_LIVED_TOKEN = "long-lived-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def _role_codes_read_afresh() -> None:
    """Each test reads the role codes its own database holds (the process keeps them for a minute)."""
    active_role_codes_forget()


MARKER_FIELD = {"id": MARKER_FIELD_ID, "name": "Intake submission", "type": "text", "code": "PORTAL_INTAKE"}


@pytest.fixture
def account(db: None) -> KommoAccount:
    """An account whose mirror already holds the deals' "Intake submission" field, as after the first
    submission (or a sync): the call sequences of the tests are those of every later submission."""
    account = KommoAccountFactory(
        name="Example",
        base_url=BASE_URL,
        auth_kind=KommoAccount.AuthKind.LONG_LIVED,
        access_token=LONG_LIVED_TOKEN,
        rate_limit_per_second=1000,
    )
    custom_fields_upsert_from_kommo(
        account=account, entity_type="leads", fields=[types.CustomField.from_api(MARKER_FIELD)]
    )
    return account


@pytest.fixture
def make_source(account: KommoAccount) -> Any:
    def make(**fields: Any) -> tuple[IntakeSource, str]:
        fields.setdefault("name", "Website form")
        fields.setdefault("default_phone_region", "US")
        fields.setdefault("pipeline_kommo_id", 3001)
        fields.setdefault("status_kommo_id", 4001)
        source = IntakeSource(account=fields.pop("account", account), **fields)
        return source, intake_source_key_generate(source=source)

    return make


@pytest.fixture
def source_and_key(make_source: Any) -> tuple[IntakeSource, str]:
    return make_source()


@pytest.fixture
def source(source_and_key: tuple[IntakeSource, str]) -> IntakeSource:
    return source_and_key[0]


@pytest.fixture
def api(source_and_key: tuple[IntakeSource, str]) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {source_and_key[1]}")
    return client


@pytest.fixture
def kommo() -> Iterator[FakeKommo]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeKommo(mock)


def submission_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "deal": {"name": "Acme — 40 seats", "price": 12000, "tags": ["webinar"]},
        "company": {"name": "Acme Inc."},
        "contacts": [
            {
                "name": "Ann Buyer",
                "emails": ["Ann@Acme.example "],
                "phones": ["(415) 555-0101"],
                "role": "decision_maker",
            },
            {"name": "Lee Lawyer", "emails": ["lee@acme.example"], "role": "lawyer"},
        ],
    }
    body.update(overrides)
    return body
