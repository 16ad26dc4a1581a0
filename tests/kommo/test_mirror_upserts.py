import copy
import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.flows.sync import mirror_follow
from apps.kommo import types
from apps.kommo.models import (
    Catalog,
    CatalogElement,
    Company,
    Contact,
    ContactChannel,
    CustomField,
    KommoAccount,
    KommoUser,
    Lead,
    LeadCatalogElement,
    LeadContact,
    Pipeline,
    StageChange,
    Status,
)
from apps.kommo.services import mirror
from apps.kommo.services.mirror import (
    catalog_elements_upsert_from_kommo,
    catalogs_upsert_from_kommo,
    companies_upsert_from_kommo,
    contact_upsert_from_kommo,
    contacts_upsert_from_kommo,
    custom_fields_upsert_from_kommo,
    lead_mark_deleted,
    lead_upsert_from_kommo,
    leads_upsert_from_kommo,
    pipelines_upsert_from_kommo,
    users_upsert_from_kommo,
)
from tests.kommo.mirror_support import account_create, at, lead, lead_payload
from tests.kommo.payloads import payload

pytestmark = pytest.mark.django_db


@pytest.fixture
def account():
    return account_create()


def test_a_lead_is_mirrored_with_promoted_columns_links_and_the_raw_payload(account):
    result = lead_upsert_from_kommo(account=account, data=lead(), follow=mirror_follow)

    deal = result.obj
    assert result.created and result.changed and result.new_stage_changes == ()
    assert (deal.kommo_id, deal.name, deal.price) == (3912171, "Example", 12)
    assert (deal.pipeline_kommo_id, deal.status_kommo_id, deal.is_lost) == (3104455, 143, True)
    assert deal.responsible_user_kommo_id == 504141 and deal.company_kommo_id == 10971463
    assert deal.updated_at == dt.datetime(2020, 5, 28, 16, 28, 57, tzinfo=dt.UTC)
    assert deal.closed_at == deal.updated_at and deal.loss_reason_kommo_id == 4203748
    assert deal.raw == payload("lead-get-response.json")
    assert list(LeadContact.objects.values_list("contact_kommo_id", "is_main")) == [(10971465, True)]
    element = LeadCatalogElement.objects.get()
    assert (element.element_kommo_id, element.catalog_kommo_id, element.quantity) == (
        525439,
        4521,
        Decimal(1),
    )


def test_the_same_payload_twice_changes_nothing(account):
    lead_upsert_from_kommo(account=account, data=lead(), follow=mirror_follow)

    again = lead_upsert_from_kommo(account=account, data=lead(), follow=mirror_follow)

    assert not again.created and not again.changed
    assert Lead.objects.count() == 1 and LeadContact.objects.count() == 1


def test_an_older_updated_at_never_overwrites_a_newer_one(account):
    lead_upsert_from_kommo(account=account, data=lead(name="Newer", updated_at=at(60)), follow=mirror_follow)

    stale = leads_upsert_from_kommo(
        account=account, leads=[lead(name="Older", updated_at=at(0))], source="webhook", follow=mirror_follow
    )

    assert stale.stale == 1 and not stale.changed
    assert Lead.objects.get().name == "Newer"
    fresher = lead_upsert_from_kommo(
        account=account, data=lead(name="Newest", updated_at=at(61)), follow=mirror_follow
    )
    assert fresher.changed and Lead.objects.get().name == "Newest"


def test_a_row_an_upsert_changes_has_its_modified_time_moved_and_one_it_leaves_alone_keeps_it(account):
    """``modified`` is when the portal last changed the row: the BI export's incremental loads compare it
    (``updated_since``), so a deal renamed or moved in Kommo must come again in the next load."""
    first = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
    with time_machine.travel(first, tick=False):
        leads_upsert_from_kommo(
            account=account,
            leads=[lead(name="Before", updated_at=at(0)), lead(id=3912172, updated_at=at(0))],
            follow=mirror_follow,
        )
    with time_machine.travel(first + dt.timedelta(hours=1), tick=False):
        leads_upsert_from_kommo(
            account=account,
            leads=[lead(name="After", updated_at=at(60)), lead(id=3912172, updated_at=at(0))],
            follow=mirror_follow,
        )

    rows = {row.kommo_id: row for row in Lead.objects.all()}
    assert (rows[3912171].name, rows[3912171].modified) == ("After", first + dt.timedelta(hours=1))
    assert rows[3912172].modified == first


LEADS_UPDATE = 'UPDATE "kommo_lead"'
COMPARED = ("kommo_id", "name", "price", "status_kommo_id", "status_id", "closed_at", "updated_at")


@pytest.mark.postgres
def test_changed_leads_are_written_in_one_update_from_values_with_the_rows_bulk_update_would_write(
    account, monkeypatch
):
    """On PostgreSQL the changed rows of a page are written by one ``UPDATE … FROM (VALUES …)``, not
    Django's ``bulk_update`` (a CASE per row and column, most of a webhook batch's upsert time), and the rows
    come out as ``bulk_update`` writes them: quotes and non-ASCII text, a price past 32 bits, a time set
    and one cleared, a deletion, the payload; a lead that did not change is not written."""
    first = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
    ids = (3912171, 3912172, 3912173, 3912174)
    page = [
        lead(id=ids[0], name='O\'Brien "Ölçü" — renewal', price=2**40, status_id=142, updated_at=at(60)),
        lead(id=ids[1], status_id=142, closed_at=None, updated_at=at(60)),
        lead(id=ids[2], is_deleted=True, updated_at=at(60)),
        lead(id=ids[3], updated_at=at(0)),  # as before
    ]

    def upsert_twice(into: KommoAccount) -> dict[int, Lead]:
        with time_machine.travel(first, tick=False):
            before = [lead(id=kommo_id, updated_at=at(0)) for kommo_id in ids]
            leads_upsert_from_kommo(account=into, leads=before, follow=mirror_follow)
        with time_machine.travel(first + dt.timedelta(hours=1), tick=False):
            leads_upsert_from_kommo(account=into, leads=page, follow=mirror_follow)
        return {row.kommo_id: row for row in Lead.objects.filter(account=into)}

    with CaptureQueriesContext(connection) as queries:
        rows = upsert_twice(account)
    updates = [query["sql"] for query in queries.captured_queries if query["sql"].startswith(LEADS_UPDATE)]
    monkeypatch.setattr(
        mirror, "_rows_update", lambda model, changed, names: model.objects.bulk_update(changed, names)
    )
    expected = upsert_twice(account_create(name="Beta", base_url="https://beta.kommo.com"))

    assert len(updates) == 1 and "FROM (VALUES" in updates[0] and "CASE" not in updates[0]
    for kommo_id, row in rows.items():
        same = expected[kommo_id]
        assert [getattr(row, name) for name in COMPARED] == [getattr(same, name) for name in COMPARED]
        assert (row.raw, row.is_deleted) == (same.raw, same.is_deleted)
        assert (row.deleted_at is None) == (same.deleted_at is None)
    assert rows[ids[0]].name == 'O\'Brien "Ölçü" — renewal' and rows[ids[0]].price == 2**40
    assert rows[ids[1]].closed_at is None and rows[ids[2]].is_deleted and rows[ids[2]].deleted_at is not None
    assert rows[ids[0]].raw["name"] == rows[ids[0]].name
    assert [rows[kommo_id].modified for kommo_id in ids] == [first + dt.timedelta(hours=1)] * 3 + [first]


def test_a_page_keeps_the_newest_of_two_payloads_of_the_same_lead(account):
    result = leads_upsert_from_kommo(
        account=account,
        leads=[lead(name="Newer", updated_at=at(9)), lead(name="Older", updated_at=at(1))],
        follow=mirror_follow,
    )

    assert result.created == 1 and Lead.objects.get().name == "Newer"


def test_a_stage_that_differs_from_the_stored_one_is_recorded_with_the_callers_source(account):
    lead_upsert_from_kommo(
        account=account, data=lead(status_id=32392159, closed_at=None), follow=mirror_follow
    )

    moved = leads_upsert_from_kommo(
        account=account,
        leads=[lead(status_id=143, updated_at=at(30))],
        source=StageChange.Source.WEBHOOK,
        follow=mirror_follow,
    )

    [change] = moved.new_stage_changes
    assert (change.from_status_kommo_id, change.to_status_kommo_id) == (32392159, 143)
    assert change.source == "webhook" and change.at == at(30) and not change.at_is_exact
    again = leads_upsert_from_kommo(
        account=account, leads=[lead(status_id=143, updated_at=at(30))], follow=mirror_follow
    )
    assert again.new_stage_changes == [] and StageChange.objects.count() == 1


def test_a_new_lead_gets_no_stage_change_from_a_sync(account):
    result = leads_upsert_from_kommo(account=account, leads=[lead()], source="sync", follow=mirror_follow)

    assert result.new_stage_changes == [] and not StageChange.objects.exists()


def test_contacts_missing_from_a_fresh_payload_are_unlinked_and_is_main_follows(account):
    lead_upsert_from_kommo(account=account, data=lead(), follow=mirror_follow)
    data = lead_payload(updated_at=at(10))
    data["_embedded"]["contacts"] = [{"id": 555, "is_main": True}, {"id": 10971465, "is_main": False}]
    data["_embedded"]["catalog_elements"] = []

    lead_upsert_from_kommo(account=account, data=types.Lead.from_api(data), follow=mirror_follow)

    links = set(LeadContact.objects.values_list("contact_kommo_id", "is_main"))
    assert links == {(555, True), (10971465, False)}
    assert not LeadCatalogElement.objects.exists()


def test_a_payload_fetched_without_contacts_leaves_the_links_alone(account):
    lead_upsert_from_kommo(account=account, data=lead(), follow=mirror_follow)
    data = lead_payload(updated_at=at(10), name="Renamed")
    del data["_embedded"]["contacts"]
    del data["_embedded"]["catalog_elements"]

    lead_upsert_from_kommo(account=account, data=types.Lead.from_api(data), follow=mirror_follow)

    assert LeadContact.objects.count() == 1 and LeadCatalogElement.objects.count() == 1


def test_a_page_of_250_leads_costs_as_many_queries_as_a_page_of_5(account, django_assert_max_num_queries):
    def page(count: int, offset: int) -> list[types.Lead]:
        out = []
        for index in range(count):
            data = lead_payload(id=1_000_000 + offset + index, updated_at=at(index))
            data["_embedded"]["contacts"] = [{"id": 2_000_000 + offset + index, "is_main": True}]
            out.append(types.Lead.from_api(data))
        return out

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as small:
        leads_upsert_from_kommo(account=account, leads=page(5, 0), follow=mirror_follow)
    # SQLite splits a bulk statement by its limit on query parameters: a few batches more, never per row.
    slack = 0 if connection.vendor == "postgresql" else 8
    with django_assert_max_num_queries(len(small.captured_queries) + slack):
        result = leads_upsert_from_kommo(account=account, leads=page(250, 10_000), follow=mirror_follow)
    assert result.created == 250 and LeadContact.objects.count() == 255


def test_a_deleted_lead_is_kept_soft_deleted_and_comes_back_only_with_a_newer_payload(account):
    lead_upsert_from_kommo(account=account, data=lead(), follow=mirror_follow)

    assert lead_mark_deleted(account=account, kommo_id=3912171, follow=mirror_follow)
    assert not lead_mark_deleted(account=account, kommo_id=3912171, follow=mirror_follow)
    deal = Lead.objects.get()
    assert deal.is_deleted and deal.deleted_at is not None

    lead_upsert_from_kommo(account=account, data=lead(), follow=mirror_follow)  # fetched before the deletion
    assert Lead.objects.get().is_deleted

    future = dt.datetime.now(tz=dt.UTC) + dt.timedelta(seconds=5)
    restored = lead_upsert_from_kommo(account=account, data=lead(updated_at=future), follow=mirror_follow)
    assert restored.changed and not restored.obj.is_deleted and restored.obj.deleted_at is None


def test_an_unknown_lead_is_not_created_by_a_deletion(account):
    assert not lead_mark_deleted(account=account, kommo_id=1, follow=mirror_follow)
    assert not Lead.objects.exists()


def test_pipelines_bring_their_statuses_and_won_lost_share_ids_across_pipelines(account):
    data = payload("pipelines.json")["_embedded"]["pipelines"][0]
    second = copy.deepcopy(data)
    second["id"], second["name"], second["is_main"] = 999, "Partners", False
    for status in second["_embedded"]["statuses"]:
        status["pipeline_id"] = 999
        if status["id"] not in (142, 143):
            status["id"] += 1000

    result = pipelines_upsert_from_kommo(
        account=account, pipelines=[types.Pipeline.from_api(data), types.Pipeline.from_api(second)]
    )

    assert result.changed and Pipeline.objects.count() == 2
    assert Status.objects.filter(kommo_id=142, is_won=True).count() == 2
    assert Status.objects.filter(kommo_id=143, is_lost=True).count() == 2
    incoming = Status.objects.get(kommo_id=32392156)
    assert incoming.type == Status.Type.INCOMING and incoming.pipeline.kommo_id == 3177727


def test_a_status_removed_from_its_pipeline_is_soft_deleted(account):
    data = payload("pipelines.json")["_embedded"]["pipelines"][0]
    pipelines_upsert_from_kommo(account=account, pipelines=[types.Pipeline.from_api(data)])
    data["_embedded"]["statuses"] = [s for s in data["_embedded"]["statuses"] if s["id"] != 32392165]

    pipelines_upsert_from_kommo(account=account, pipelines=[types.Pipeline.from_api(data)])

    assert Status.objects.get(kommo_id=32392165).is_deleted
    assert not Status.objects.get(kommo_id=32392159).is_deleted


def test_a_lead_mirrored_before_its_pipeline_points_at_its_stage_once_the_pipeline_arrives(account):
    lead_upsert_from_kommo(
        account=account, data=lead(pipeline_id=3177727, status_id=32392159), follow=mirror_follow
    )
    assert Lead.objects.get().status is None

    pipelines_upsert_from_kommo(
        account=account,
        pipelines=[types.Pipeline.from_api(payload("pipelines.json")["_embedded"]["pipelines"][0])],
    )

    deal = Lead.objects.select_related("status", "pipeline").get()
    assert deal.status is not None and deal.status.kommo_id == 32392159 and deal.pipeline.kommo_id == 3177727


def test_contacts_keep_normalised_emails_and_phones_for_lookup(account):
    data = payload("contacts-list.json")["_embedded"]["contacts"][0]
    data["custom_fields_values"].append(
        {
            "field_id": 178384,
            "field_code": "EMAIL",
            "field_type": "multitext",
            "values": [{"value": " Sam@Example.COM ", "enum_code": "WORK"}, {"value": "sam@example.com"}],
        }
    )
    data["custom_fields_values"][0]["values"] = [{"value": "+1 (965) 179-6212"}, {"value": "nonsense"}]

    result = contact_upsert_from_kommo(
        account=account, data=types.Contact.from_api(data), follow=mirror_follow
    )

    contact = result.obj
    assert contact.emails == ["sam@example.com"] and contact.phones == ["+19651796212"]
    assert contact.company_kommo_id == 406320
    keys = set(ContactChannel.objects.values_list("kind", "value"))
    assert keys == {("email", "sam@example.com"), ("phone", "+19651796212")}
    found = Contact.objects.get(account=account, channels__kind="phone", channels__value="+19651796212")
    assert found == contact


def test_a_changed_phone_replaces_the_lookup_key(account):
    data = payload("contacts-list.json")["_embedded"]["contacts"][0]
    data["custom_fields_values"][0]["values"] = [{"value": "+19651796212"}]
    contact_upsert_from_kommo(account=account, data=types.Contact.from_api(data), follow=mirror_follow)
    data["custom_fields_values"][0]["values"] = [{"value": "+14155550123"}]
    data["updated_at"] += 1

    contact_upsert_from_kommo(account=account, data=types.Contact.from_api(data), follow=mirror_follow)

    assert list(ContactChannel.objects.values_list("value", flat=True)) == ["+14155550123"]


def test_links_to_contacts_companies_and_users_mirrored_later_are_filled_in(account):
    lead_upsert_from_kommo(account=account, data=lead(), follow=mirror_follow)
    contact = payload("contact-get.json")
    contact["id"] = 10971465
    user = payload("users-list.json")["_embedded"]["users"][0]
    user["id"] = 504141
    company = {"id": 10971463, "name": "Acme Ltd", "updated_at": 1590683337}

    contacts_upsert_from_kommo(
        account=account, contacts=[types.Contact.from_api(contact)], follow=mirror_follow
    )
    companies_upsert_from_kommo(account=account, companies=[types.Company.from_api(company)])
    users_upsert_from_kommo(account=account, users=[types.KommoUser.from_api(user)])

    deal = Lead.objects.get()
    assert LeadContact.objects.get().contact == Contact.objects.get(kommo_id=10971465)
    assert deal.company == Company.objects.get(kommo_id=10971463)
    assert deal.responsible_user == KommoUser.objects.get(kommo_id=504141)


def test_custom_fields_keep_their_options_and_drop_removed_ones(account):
    fields = payload("custom-fields-leads-list.json")["_embedded"]["custom_fields"]
    select = payload("custom-field-create-response.json")["_embedded"]["custom_fields"][0]
    fields.append(select)

    first = custom_fields_upsert_from_kommo(
        account=account, entity_type="leads", fields=[types.CustomField.from_api(f) for f in fields]
    )
    assert first.created == len(fields)
    row = CustomField.objects.get(kommo_id=select["id"])
    assert row.entity_type == "leads" and row.enums.count() == len(select["enums"])

    select["enums"] = select["enums"][:1]
    second = custom_fields_upsert_from_kommo(
        account=account, entity_type="leads", fields=[types.CustomField.from_api(f) for f in fields]
    )
    assert second.updated == 1 and row.enums.count() == 1


def test_catalog_elements_link_to_their_catalog_and_to_leads_that_named_them(account):
    lead_upsert_from_kommo(account=account, data=lead(), follow=mirror_follow)
    catalog = payload("catalogs-list.json")["_embedded"]["catalogs"][0]
    catalog["id"] = 4521
    element = payload("catalog-elements.json")["_embedded"]["elements"][0]

    catalogs_upsert_from_kommo(account=account, catalogs=[types.Catalog.from_api(catalog)])
    result = catalog_elements_upsert_from_kommo(
        account=account,
        elements=[types.CatalogElement.from_api(element, catalog_id=4521)],
        follow=mirror_follow,
    )

    assert result.created == 1
    row = CatalogElement.objects.get()
    assert row.catalog == Catalog.objects.get() and row.name == element["name"] and not row.is_deleted
    assert LeadCatalogElement.objects.get().element == row


def test_a_changed_quantity_updates_the_element_link_in_place_and_the_same_one_leaves_it(account):
    lead_upsert_from_kommo(account=account, data=lead(), follow=mirror_follow)
    link = LeadCatalogElement.objects.get()
    data = lead_payload(updated_at=at(10))
    data["_embedded"]["catalog_elements"][0]["metadata"]["quantity"] = 2.5

    lead_upsert_from_kommo(account=account, data=types.Lead.from_api(data), follow=mirror_follow)

    again = LeadCatalogElement.objects.get()
    assert again.pk == link.pk and again.quantity == Decimal("2.5")
    data = lead_payload(updated_at=at(20), name="Renamed")
    data["_embedded"]["catalog_elements"][0]["metadata"]["quantity"] = "2.50"
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        lead_upsert_from_kommo(account=account, data=types.Lead.from_api(data), follow=mirror_follow)
    assert not [q for q in captured.captured_queries if 'UPDATE "kommo_leadcatalogelement"' in q["sql"]]


def test_a_renamed_option_is_renamed_in_place_and_its_field_counts_as_updated(account):
    select = payload("custom-field-create-response.json")["_embedded"]["custom_fields"][0]
    custom_fields_upsert_from_kommo(
        account=account, entity_type="leads", fields=[types.CustomField.from_api(select)]
    )
    first_pk = CustomField.objects.get(kommo_id=select["id"]).enums.get(kommo_id=select["enums"][0]["id"]).pk
    select["enums"][0]["value"] = "Renamed option"

    result = custom_fields_upsert_from_kommo(
        account=account, entity_type="leads", fields=[types.CustomField.from_api(select)]
    )

    row = CustomField.objects.get(kommo_id=select["id"])
    assert (result.updated, result.unchanged) == (1, 0)
    renamed = row.enums.get(kommo_id=select["enums"][0]["id"])
    assert renamed.pk == first_pk and renamed.value == "Renamed option"
    assert row.enums.count() == len(select["enums"])
