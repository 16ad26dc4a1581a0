"""An account whose stakeholders are mapped both ways (see tests/fixtures/kommo/stakeholders/README.md),
helpers that fill the mirror through the mirror's own upserts, and Kommo's events-log items (``event``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses

from apps.flows.sync import mirror_follow
from apps.kommo import types
from apps.kommo.client import KommoClient
from apps.kommo.models import KommoAccount
from apps.kommo.models.mirror import Lead
from apps.kommo.ratelimit import FileSlotStore, RateLimiter
from apps.kommo.services.mirror import (
    catalog_elements_upsert_from_kommo,
    contacts_upsert_from_kommo,
    leads_upsert_from_kommo,
    pipelines_upsert_from_kommo,
    users_upsert_from_kommo,
)
from apps.stakeholders.models import FieldMapping, FieldMappingValue, Role, Stakeholder
from kommo_sandbox.server import SandboxServer
from tests.factories import KommoAccountFactory
from tests.support.fake_kommo import FakeKommo
from tests.support.services import unavailable

FOLDER = Path(__file__).resolve().parents[1] / "fixtures" / "kommo" / "stakeholders"
BASE_URL = "https://acme.kommo.com"
CATALOG_ID = 7001
ROLE_ORDER = ("decision_maker", "technical_evangelist", "user", "lawyer", "influencer", "blocker")


def stakeholder_payload(name: str) -> Any:
    return json.loads((FOLDER / name).read_text(encoding="utf-8"))


def map_account(account: KommoAccount, *, contact: bool = True, catalog: bool = True) -> None:
    """Field mappings of the recorded payloads' account."""
    roles = {role.code: role for role in Role.objects.all()}
    if contact:
        mapping = FieldMapping.objects.create(
            account=account, attribute="role", source="contact_field", field_id=880001
        )
        FieldMappingValue.objects.bulk_create(
            FieldMappingValue(mapping=mapping, enum_id=9001 + i, role=roles[code])
            for i, code in enumerate(ROLE_ORDER)
        )
    if catalog:
        role = FieldMapping.objects.create(
            account=account, attribute="role", source="catalog_field", field_id=880101, catalog_id=CATALOG_ID
        )
        FieldMappingValue.objects.bulk_create(
            FieldMappingValue(mapping=role, enum_id=9101 + i, role=roles[code])
            for i, code in enumerate(ROLE_ORDER)
        )
        approval = FieldMapping.objects.create(
            account=account,
            attribute="approval_status",
            source="catalog_field",
            field_id=880102,
            catalog_id=CATALOG_ID,
        )
        FieldMappingValue.objects.bulk_create(
            FieldMappingValue(mapping=approval, enum_id=enum_id, approval=value)
            for enum_id, value in ((9201, "pending"), (9202, "approved"), (9203, "rejected"))
        )
        FieldMapping.objects.create(
            account=account,
            attribute="last_touch",
            source="catalog_field",
            field_id=880103,
            catalog_id=CATALOG_ID,
        )


def mirror_recorded_deal(account: KommoAccount) -> None:
    """Upsert the recorded deal, its contacts and its catalog elements, in the order a sync does."""
    contacts = [
        types.Contact.from_api(item) for item in stakeholder_payload("contacts.json")["_embedded"]["contacts"]
    ]
    elements = [
        types.CatalogElement.from_api(item)
        for item in stakeholder_payload("catalog-elements.json")["_embedded"]["elements"]
    ]
    contacts_upsert_from_kommo(account=account, contacts=contacts, follow=mirror_follow)
    catalog_elements_upsert_from_kommo(account=account, elements=elements, follow=mirror_follow)
    leads_upsert_from_kommo(
        account=account, leads=[types.Lead.from_api(stakeholder_payload("lead.json"))], follow=mirror_follow
    )


def event(
    event_id: str,
    kind: str,
    entity_type: str,
    entity_id: int,
    at: int,
    after: list,
    before: list | None = None,
) -> dict[str, Any]:
    """An events-log item in the shape of Kommo's (shared/kommo/samples/events.json)."""
    return {
        "id": event_id,
        "type": kind,
        "entity_id": entity_id,
        "entity_type": entity_type,
        "created_by": 10500001,
        "created_at": at,
        "value_after": after,
        "value_before": before or [],
        "account_id": 31000001,
        "_links": {"self": {"href": f"{BASE_URL}/api/v4/events/{event_id}"}},
        "_embedded": {"entity": {"id": entity_id}},
    }


@pytest.fixture
def kommo_client(account: KommoAccount, tmp_path: Path) -> KommoClient:
    return KommoClient(
        account, limiter=RateLimiter(FileSlotStore(tmp_path / "ratelimit")), sleep=lambda _: None
    )


@pytest.fixture
def kommo(account: KommoAccount) -> Iterator[FakeKommo]:
    """The suite's fake Kommo holding the recorded contacts and Stakeholders elements of the account; a
    call it has no answer for fails the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake = FakeKommo(mock, account.api_root)
        fake.contacts = {c["id"]: c for c in stakeholder_payload("contacts.json")["_embedded"]["contacts"]}
        elements = stakeholder_payload("catalog-elements.json")["_embedded"]["elements"]
        fake.elements[CATALOG_ID] = {element["id"]: element for element in elements}
        yield fake
        assert not fake.unrouted, f"calls the fake Kommo has no answer for: {fake.unrouted}"


@pytest.fixture
def account(db: None) -> KommoAccount:
    return KommoAccountFactory(
        name="Acme",
        base_url=BASE_URL,
        auth_kind=KommoAccount.AuthKind.LONG_LIVED,
        access_token="long-lived-token",
        rate_limit_per_second=1000,
    )


@pytest.fixture
def mapped_account(account: KommoAccount) -> KommoAccount:
    map_account(account)
    return account


# -- a live Kommo sandbox ---------------------------------------------------------------------------------


def _sandbox(seed: str) -> Iterator[Any]:
    server = SandboxServer(seed=seed, webhooks=False).start()
    yield server
    server.stop()


@pytest.fixture
def empty_sandbox() -> Iterator[Any]:
    yield from _sandbox("empty")


@pytest.fixture
def demo_sandbox() -> Iterator[Any]:
    yield from _sandbox("demo")


def connect(server: Any) -> KommoAccount:
    """A portal account for the sandbox's account, through its long-lived token."""
    return KommoAccountFactory(
        name="Sandbox",
        base_url=server.base_url,
        kommo_id=server.credentials["account_id"],
        auth_kind=KommoAccount.AuthKind.LONG_LIVED,
        access_token=server.credentials["long_lived_token"],
        rate_limit_per_second=6,  # under the sandbox's 7 per second, as against Kommo
    )


def client_for(account: KommoAccount, tmp_path: Path) -> KommoClient:
    return KommoClient(
        account, limiter=RateLimiter(FileSlotStore(tmp_path / "ratelimit")), sleep=lambda _: None
    )


def mirror_sync(*, account: KommoAccount, client: KommoClient) -> None:
    """Fill the mirror from the sandbox the way a full sync does: stages, users, contacts, elements of
    the mapped catalogs, then deals with their links."""
    pipelines_upsert_from_kommo(account=account, pipelines=client.pipelines_list())
    users_upsert_from_kommo(account=account, users=list(client.users_list()))
    contacts_upsert_from_kommo(account=account, contacts=list(client.contacts_list()), follow=mirror_follow)
    for catalog_id in set(
        FieldMapping.objects.filter(account=account).values_list("catalog_id", flat=True)
    ) - {None}:
        catalog_elements_upsert_from_kommo(
            account=account, elements=list(client.catalog_elements_list(catalog_id)), follow=mirror_follow
        )
    leads_upsert_from_kommo(
        account=account,
        leads=list(client.leads_list(with_=("contacts", "catalog_elements"))),
        follow=mirror_follow,
    )


def contact_only_stakeholder(
    *, account: KommoAccount, client: KommoClient, deal: Lead, name: str, role: Role
) -> Stakeholder:
    """A person made a stakeholder of ``deal`` in Kommo as a contact only: a new contact with the role in
    its role field, linked to the deal, no Stakeholders element; mirrored as a full sync does."""
    role_field = FieldMapping.objects.get(account=account, attribute="role", source="contact_field")
    enum_id = role_field.values.get(role=role).enum_id
    (created,) = client.contacts_create(
        [
            types.ContactWrite(
                name=name, custom_fields_values=(types.FieldValueWrite.enums(role_field.field_id, enum_id),)
            )
        ]
    )
    client.links_create(
        "leads", deal.kommo_id, [types.LinkWrite(to_entity_id=created.id, to_entity_type="contacts")]
    )
    mirror_sync(account=account, client=client)
    return Stakeholder.objects.select_related("account", "contact", "catalog_element", "lead__account").get(
        lead=deal, name=name
    )


# -- Chromium ---------------------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def chromium(monkeypatch):  # type: ignore[no-untyped-def]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright is not installed")
    if not Path(CHROMIUM).exists():
        unavailable(f"Chromium is not installed ({CHROMIUM} not found)")
    # Playwright's sync API keeps an event loop in this thread; the test's ORM calls are plain sync code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
