"""The same client calls against recorded Kommo payloads and against the live Kommo sandbox.

Each test runs twice (``kommo`` fixture): ``recorded`` is the fake Kommo holding what the payloads in
tests/fixtures/kommo/api/ show, ``sandbox`` is a live emulator over HTTP. A disagreement between our
reading of Kommo and the emulation fails one of the two. Each test names the calls it makes
(``kommo.expects``); against the fake, exactly those must be made.
"""

import datetime as dt

import pytest

from apps.kommo.client import KommoClient
from apps.kommo.exceptions import KommoAuthError, KommoValidationError
from apps.kommo.models import KommoAccount
from apps.kommo.types import (
    ComplexLeadWrite,
    ContactWrite,
    CustomFieldType,
    LeadWrite,
    LinkWrite,
    TaskWrite,
)
from tests.kommo.payloads import payload

pytestmark = pytest.mark.sandbox


def test_it_reads_the_account_the_token_belongs_to(kommo):
    kommo.expects("GET", "/api/v4/account")

    account = kommo.client.account_get()

    if kommo.live:
        assert (account.id, account.subdomain) == (
            kommo.server.credentials["account_id"],
            kommo.server.credentials["subdomain"],
        )
    else:
        assert (account.id, account.subdomain) == (123123123, "yourdomain")
    assert account.created_at is not None and account.created_at.tzinfo is dt.UTC


def test_every_pipeline_has_the_fixed_won_and_lost_statuses(kommo):
    kommo.expects("GET", "/api/v4/leads/pipelines")

    pipelines = kommo.client.pipelines_list()

    assert pipelines
    for pipeline in pipelines:
        won, lost = pipeline.status(142), pipeline.status(143)
        assert won is not None and lost is not None
        assert won.type == lost.type == 0 and not won.is_editable and not lost.is_editable
        assert all(status.pipeline_id == pipeline.id for status in pipeline.statuses)
        if pipeline.is_unsorted_on:
            assert any(status.is_incoming for status in pipeline.statuses)
    if kommo.live:
        assert {p.id for p in pipelines} == set(kommo.store_account().pipelines)


def test_listing_leads_returns_every_lead(kommo):
    kommo.expects("GET", "/api/v4/leads")

    leads = list(kommo.client.leads_list(with_=["contacts"]))

    ids = [lead.id for lead in leads]
    assert len(ids) == len(set(ids))
    if kommo.live:
        stored = kommo.store_account().leads
        assert set(ids) == {lead.id for lead in stored.values() if not getattr(lead, "is_deleted", False)}
        assert any(lead.main_contact_id for lead in leads)
    else:
        assert ids == [20024930]


def test_a_lead_that_does_not_exist_is_none(kommo):
    kommo.expects("GET", "/api/v4/leads/999999999")

    assert kommo.client.leads_get(999999999) is None


def test_created_leads_come_back_with_ids_and_request_ids_and_can_be_updated(kommo):
    kommo.expects("POST", "/api/v4/leads")
    kommo.expects("PATCH", "/api/v4/leads")

    created = kommo.client.leads_create(
        [LeadWrite(name="Example Lead 1", price=20000), LeadWrite(name="Example Lead 2")]
    )
    updated = kommo.client.leads_update([LeadWrite(id=item.id, price=15000) for item in reversed(created)])

    assert [item.request_id for item in created] == ["0", "1"]
    assert all(item.id > 0 for item in created)
    assert [item.id for item in updated] == [item.id for item in reversed(created)]
    assert all(item.updated_at is not None for item in updated)
    if kommo.live:
        lead = kommo.client.leads_get(created[0].id)
        assert lead is not None and lead.price == 15000 and lead.name == "Example Lead 1"


def test_an_invalid_write_is_a_validation_error_keyed_by_request_id(kommo):
    kommo.fails_next("POST", "/api/v4/leads", 400, payload("error-validation.json"))

    with pytest.raises(KommoValidationError) as caught:
        kommo.client.leads_create([LeadWrite(name="Bad", status_id=1, custom_fields_values=None)])

    assert caught.value.permanent
    assert "0" in caught.value.errors


def test_contacts_are_found_by_phone(kommo):
    if kommo.live:
        stored = next(c for c in kommo.store_account().contacts.values() if c.custom_fields_values)
        contact = kommo.client.contacts_get(stored.id)
        assert contact is not None and contact.phones
        phone = contact.phones[0]
    else:
        phone = "19651796212"
    kommo.expects("GET", "/api/v4/contacts")

    found = kommo.client.contacts_search(phone)

    assert found and all(phone in contact.phones for contact in found)


def test_a_complex_lead_creates_a_lead_with_its_contact_in_one_call(kommo):
    kommo.expects("POST", "/api/v4/leads/complex")

    [result] = kommo.client.leads_complex_create(
        [
            ComplexLeadWrite(
                lead=LeadWrite(name="New lead 1", price=2222, request_id="1"),
                contact=ContactWrite(first_name="Adam", phones=("+14155550100",)),
            )
        ]
    )

    assert result.id > 0 and result.contact_id and result.request_ids == ("1",) and not result.merged
    if kommo.live:
        lead = kommo.client.leads_get(result.id, with_=["contacts"])
        assert lead is not None and lead.main_contact_id == result.contact_id


def test_links_are_created_and_listed(kommo):
    if kommo.live:
        lead_id = next(iter(kommo.store_account().leads))
        contact_id = next(iter(kommo.store_account().contacts))
    else:
        lead_id, contact_id = 7593303, 50
    kommo.expects("POST", f"/api/v4/leads/{lead_id}/link")
    kommo.expects("GET", f"/api/v4/leads/{lead_id}/links")

    created = kommo.client.links_create(
        "leads", lead_id, [LinkWrite(to_entity_id=contact_id, to_entity_type="contacts")]
    )
    listed = list(kommo.client.links_list("leads", lead_id))

    assert any(link.to_entity_type == "contacts" and link.to_entity_id == contact_id for link in created)
    assert any(link.to_entity_type == "contacts" for link in listed)
    assert all(link.is_main is not None for link in listed if link.to_entity_type == "contacts")


def test_tasks_are_created_for_a_lead(kommo):
    lead_id = next(iter(kommo.store_account().leads)) if kommo.live else 9785993
    kommo.expects("POST", "/api/v4/tasks")

    [created] = kommo.client.tasks_create(
        [
            TaskWrite(
                text="Meeting with the client",
                complete_till=dt.datetime.now(tz=dt.UTC) + dt.timedelta(days=1),
                entity_id=lead_id,
                entity_type="leads",
                task_type_id=1,
                request_id="example",
            )
        ]
    )

    assert created.id > 0 and created.request_id == "example"


def test_events_are_read_with_string_ids(kommo):
    kommo.expects("GET", "/api/v4/events")
    kommo.expects("GET", "/api/v4/events")  # page 2: nothing more (204)
    if kommo.fake:
        kommo.fake.page_size = 1  # the recording is a full first page (its _links.next)

    events = list(kommo.client.events_list({"type": ["lead_status_changed"]}))

    assert events
    for event in events:
        assert isinstance(event.id, str) and event.type == "lead_status_changed"
        assert event.lead_status_after is not None
        assert event.created_at is not None and event.created_at.tzinfo is dt.UTC


def test_custom_field_definitions_have_known_types(kommo):
    kommo.expects("GET", "/api/v4/leads/custom_fields")
    kommo.expects("GET", "/api/v4/leads/custom_fields")  # page 2: nothing more (204)
    if kommo.fake:
        kommo.fake.page_size = 2  # the recording is a full first page of two (its _links.next)

    fields = list(kommo.client.custom_fields_list("leads"))

    assert fields
    known = {member.value for member in CustomFieldType}
    assert all(field.type in known for field in fields)
    for field in fields:
        if field.type in (CustomFieldType.SELECT, CustomFieldType.MULTISELECT):
            assert field.enums and all(option.id for option in field.enums)


def test_webhooks_are_subscribed_and_unsubscribed_by_destination(kommo):
    destination = "https://example.test"
    kommo.expects("POST", "/api/v4/webhooks")
    kommo.expects("DELETE", "/api/v4/webhooks")

    hook = kommo.client.webhooks_subscribe(destination, ["add_lead"], sort=10)
    if kommo.live:
        assert destination in [item.destination for item in kommo.client.webhooks_list()]
    kommo.client.webhooks_unsubscribe(destination)

    assert (hook.destination, hook.settings, hook.disabled) == (destination, ("add_lead",), False)
    if kommo.live:
        assert destination not in [item.destination for item in kommo.client.webhooks_list()]


def test_a_wrong_token_is_an_auth_error_recorded_on_the_account(kommo, make_account):
    account = make_account(base_url=kommo.account.base_url, access_token="not-a-valid-token")
    kommo.expects("GET", "/api/v4/account")

    with pytest.raises(KommoAuthError):
        KommoClient(account, limiter=kommo.client.limiter).account_get()

    assert KommoAccount.objects.get(pk=account.pk).auth_error
