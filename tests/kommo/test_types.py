import datetime as dt
from decimal import Decimal

import pytest

from apps.kommo.exceptions import KommoPayloadError
from apps.kommo.types import (
    Account,
    Catalog,
    CatalogElement,
    CompanyWrite,
    ComplexLeadResult,
    ComplexLeadWrite,
    Contact,
    ContactWrite,
    CustomField,
    CustomFieldType,
    CustomFieldValue,
    CustomFieldWrite,
    Event,
    FieldValueWrite,
    KommoUser,
    Lead,
    LeadWrite,
    Link,
    LinkWrite,
    Pipeline,
    Task,
    TaskWrite,
    TokenPair,
    WebhookSubscription,
    WriteResult,
)
from tests.kommo.payloads import payload

UTC = dt.UTC


def test_a_lead_with_embedded_contacts_tags_and_catalog_elements_is_read():
    lead = Lead.from_api(payload("lead-get-response.json"))

    assert lead.id == 3912171
    assert lead.status_id == 143 and lead.is_lost and not lead.is_won
    assert lead.closed_at == dt.datetime(2020, 5, 28, 16, 28, 57, tzinfo=UTC)
    assert lead.created_at is not None and lead.created_at.tzinfo is UTC
    assert lead.main_contact_id == 10971465
    assert lead.company_ids == (10971463,)
    assert [tag.name for tag in lead.tags] == ["тест"]
    assert lead.catalog_elements[0].catalog_id == 4521
    assert lead.catalog_elements[0].quantity == Decimal(1)
    assert lead.custom_fields_values == ()
    assert lead.loss_reason_id == 4203748
    assert lead.raw["is_price_modified_by_robot"] is False


def test_a_lead_list_item_with_new_keys_and_a_select_field_is_read():
    item = payload("leads-list-response.json")["_embedded"]["leads"][0]
    lead = Lead.from_api(item)

    specialty = lead.field(1928052)
    assert specialty is not None
    assert specialty.field_type == CustomFieldType.SELECT
    assert specialty.value == "Diagnostic"
    assert specialty.enum_ids == (1669868,)
    assert lead.field(1) is None
    assert lead.contacts == () and lead.main_contact_id is None
    assert lead.closed_at is None


def test_contacts_expose_phones_and_emails_from_the_multitext_fields():
    listed = Contact.from_api(payload("contacts-list.json")["_embedded"]["contacts"][0])
    older = Contact.from_api(payload("contact-get.json"))

    assert listed.phones == ("19651796212",)
    assert listed.emails == ()
    assert listed.company_ids == (406320,)
    # the older example says "enum" where current payloads say "enum_code"
    assert older.custom_fields_values[0].values[0].enum_code == "WORK"
    assert older.lead_ids == (1, 3916883)


def test_field_values_are_typed_by_the_field_type():
    def read(field_type, value):
        return CustomFieldValue.from_api(
            {"field_id": 1, "field_name": "x", "field_type": field_type, "values": [{"value": value}]}
        ).value

    assert read("date", 1577836800) == dt.datetime(2020, 1, 1, tzinfo=UTC)
    assert read("date_time", "1577836800") == dt.datetime(2020, 1, 1, tzinfo=UTC)
    assert read("birthday", "2020-01-01T00:00:00+00:00") == dt.datetime(2020, 1, 1, tzinfo=UTC)
    assert read("numeric", "12") == Decimal(12)
    assert read("monetary", 1.5) == Decimal("1.5")
    assert read("checkbox", True) is True
    assert read("checkbox", "0") is False
    assert read("legal_entity", {"name": "Lab"}) == {"name": "Lab"}
    assert read("text", "plain") == "plain"
    with pytest.raises(KommoPayloadError):
        read("numeric", "twelve")


def test_every_documented_field_type_is_known():
    documented = (
        "text numeric checkbox select multiselect multitext date url textarea radiobutton streetaddress "
        "smart_address birthday legal_entity date_time items category price tracking_data linked_entity "
        "org_legal_name monetary chained_list file payer supplier"
    ).split()
    assert sorted(documented) == sorted(member.value for member in CustomFieldType)


def test_pipelines_keep_status_type_sort_and_the_closed_statuses():
    pipeline = Pipeline.from_api(payload("pipelines.json")["_embedded"]["pipelines"][0])

    assert pipeline.is_main
    assert [status.sort for status in pipeline.statuses] == [10, 20, 30, 10000, 11000]
    assert pipeline.statuses[0].is_incoming
    won, lost = pipeline.status(142), pipeline.status(143)
    assert won is not None and won.is_won and won.is_closed and not won.is_editable
    assert lost is not None and lost.is_lost


def test_custom_field_definitions_and_their_options_are_read():
    listed = [
        CustomField.from_api(item)
        for item in payload("custom-fields-leads-list.json")["_embedded"]["custom_fields"]
    ]
    created = CustomField.from_api(
        payload("custom-field-create-response.json")["_embedded"]["custom_fields"][0]
    )

    assert listed[0].required_statuses[0].status_id == 41221
    assert listed[1].type == CustomFieldType.DATE and listed[1].required_statuses == ()
    assert created.type == CustomFieldType.MULTISELECT
    assert [(option.id, option.value) for option in created.enums] == [
        (3778801, "Value 1"),
        (3778803, "Value 2"),
    ]
    option = created.enum(3778803)
    assert option is not None and option.value == "Value 2"


def test_users_catalogs_elements_links_tasks_events_and_webhooks_are_read():
    user = KommoUser.from_api(payload("users-list.json")["_embedded"]["users"][0])
    catalog = Catalog.from_api(payload("catalogs-list.json")["_embedded"]["catalogs"][0])
    element = CatalogElement.from_api(payload("catalog-elements.json")["_embedded"]["elements"][0])
    links = [Link.from_api(item) for item in payload("links-get.json")["_embedded"]["links"]]
    task = Task.from_api(payload("tasks-list.json")["_embedded"]["tasks"][0])
    event = Event.from_api(payload("events.json")["_embedded"]["events"][0])
    hook = WebhookSubscription.from_api(payload("webhook-subscribe-response.json"))

    assert (user.email, user.is_admin, user.is_active) == ("user@example.com", False, True)
    assert (catalog.type, catalog.can_link_multiple) == ("regular", True)
    price = element.field(271211)
    assert price is not None and price.value == Decimal(12)
    assert element.is_deleted is False  # Kommo says null
    assert [link.is_main for link in links] == [None, True, False, None]
    assert links[0].catalog_id == 4521 and links[0].quantity == Decimal(1)
    assert task.is_completed and task.result_text is None and task.entity_type == "leads"
    assert event.id == "aaabbbbcccc1234567"
    after, before = event.lead_status_after, event.lead_status_before
    assert after is not None and (after.pipeline_id, after.status_id) == (123, 111)
    assert before is not None and before.status_id == 222
    assert hook.settings == ("add_lead",) and not hook.disabled


def test_account_complex_results_write_results_and_token_pair_are_read():
    account = Account.from_api(payload("account.json"))
    merged = ComplexLeadResult.from_api(payload("leads-complex-response-merged.json")[0])
    created = [
        WriteResult.from_api(item) for item in payload("leads-post-response.json")["_embedded"]["leads"]
    ]
    now = dt.datetime(2024, 1, 1, tzinfo=UTC)
    tokens = TokenPair.from_api(payload("token-response.json"), now=now)

    assert (account.id, account.subdomain) == (123123123, "yourdomain")
    assert merged.merged and merged.request_ids == ("2",) and merged.contact_id == 12117258
    assert [(item.id, item.request_id) for item in created] == [(152462, "0"), (152464, "1")]
    assert tokens.expires_at == now + dt.timedelta(days=1)
    assert tokens.access_token not in repr(tokens) and tokens.refresh_token not in repr(tokens)


def test_unknown_keys_are_tolerated_and_missing_required_keys_are_not():
    data = {**payload("lead-get-response.json"), "brand_new_key": {"x": 1}}
    assert Lead.from_api(data).raw["brand_new_key"] == {"x": 1}
    with pytest.raises(KommoPayloadError):
        Lead.from_api({"name": "no id"})
    with pytest.raises(KommoPayloadError):
        Lead.from_api([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize("quantity", ["two", "", True, "NaN", "Infinity", [1]])
def test_a_quantity_that_is_not_a_number_is_a_payload_error(quantity):
    data = payload("lead-get-response.json")
    element = {"id": 5, "metadata": {"catalog_id": 7, "quantity": quantity}}
    broken = {**data, "_embedded": {**data["_embedded"], "catalog_elements": [element]}}
    link = {"to_entity_id": 5, "to_entity_type": "catalog_elements", "metadata": {"quantity": quantity}}

    with pytest.raises(KommoPayloadError, match="quantity"):
        Lead.from_api(broken)
    with pytest.raises(KommoPayloadError, match="quantity"):
        Link.from_api(link)


def test_a_quantity_sent_as_a_number_or_its_text_is_read_exactly():
    data = payload("lead-get-response.json")
    elements = [{"id": 5, "metadata": {"quantity": 2.5}}, {"id": 6, "metadata": {"quantity": " 3 "}}]
    lead = Lead.from_api({**data, "_embedded": {**data["_embedded"], "catalog_elements": elements}})

    assert [ref.quantity for ref in lead.catalog_elements] == [Decimal("2.5"), Decimal("3")]


def test_lead_writes_match_the_documented_request_shape():
    patch = payload("leads-patch-request.json")
    written = [
        LeadWrite(
            id=152464,
            name="Lead with Sam",
            price=12000,
            status_id=58141811,
            custom_fields_values=(FieldValueWrite.of(184994, True),),
        ).to_api(),
        LeadWrite(id=152462, price=15000, pipeline_id=6954751).to_api(),
    ]
    assert written == patch


def test_complex_lead_writes_nest_one_contact_and_one_company():
    body = ComplexLeadWrite(
        lead=LeadWrite(
            name="New lead 1", price=2222, status_id=49366079, pipeline_id=5597036, request_id="1"
        ),
        contact=ContactWrite(first_name="Adam", phones=("0965423364",)),
        company=CompanyWrite(name="Kommo"),
    ).to_api()

    assert body["_embedded"]["contacts"] == [
        {
            "first_name": "Adam",
            "custom_fields_values": [
                {"field_code": "PHONE", "values": [{"value": "0965423364", "enum_code": "WORK"}]}
            ],
        }
    ]
    assert body["_embedded"]["companies"] == [{"name": "Kommo"}]
    assert body["request_id"] == "1"


def test_field_writes_cover_dates_enums_multitext_and_clearing():
    examples = payload("custom-fields-values-write-examples.json")

    assert (
        FieldValueWrite.of(9, dt.datetime(2020, 1, 1, tzinfo=UTC)).to_api()
        == examples["date_date_time_birthday"]
    )
    assert FieldValueWrite.enums(111, 17, 19).to_api() == examples["multiselect"]
    assert FieldValueWrite.enums(11, 17).to_api() == examples["select_by_enum_id"]
    assert FieldValueWrite.clear(178382).to_api() == examples["clear_field_community_pattern"]
    assert (
        FieldValueWrite.multitext("PHONE", ["+14155551234"]).to_api() == examples["multitext_by_field_code"]
    )
    with pytest.raises(ValueError):
        FieldValueWrite(values=(), field_id=1, field_code="PHONE")


def test_link_task_and_custom_field_writes_match_the_documented_shapes():
    links = [
        LinkWrite(to_entity_id=11069775, to_entity_type="contacts", is_main=True).to_api(),
        LinkWrite(
            to_entity_id=597393, to_entity_type="catalog_elements", quantity=2, catalog_id=4521
        ).to_api(),
    ]
    task = TaskWrite(
        task_type_id=1,
        text="Meeting with the client",
        complete_till=dt.datetime.fromtimestamp(1588885140, tz=UTC),
        entity_id=9785993,
        entity_type="leads",
        request_id="example",
    ).to_api()
    field = CustomFieldWrite(
        name="multi select", type=CustomFieldType.MULTISELECT, sort=510, enums=("Value 1", "Value 2")
    )

    assert links == payload("links-post-request.json")
    assert task == payload("tasks-post.json")[0]
    assert [option["value"] for option in field.to_api()["enums"]] == ["Value 1", "Value 2"]
    with pytest.raises(ValueError):
        LinkWrite(to_entity_id=1, to_entity_type="catalog_elements")
    with pytest.raises(ValueError):
        TaskWrite(text="no deadline")
