import datetime as dt

import pytest

from apps.kommo.models.mirror import Contact, Lead
from apps.kommo.provenance import MirrorSource, Provenance
from apps.stakeholders.models import FieldMapping, Stakeholder
from apps.stakeholders.selectors import stakeholders_for_lead, stakeholders_for_leads
from apps.stakeholders.services import stakeholders_derive_for_leads
from tests.stakeholders.conftest import map_account, mirror_recorded_deal

pytestmark = pytest.mark.django_db
SYNC = Provenance(MirrorSource.SYNC)


def derive(account) -> Lead:
    lead = Lead.objects.get(account=account, kommo_id=5001)
    stakeholders_derive_for_leads(account=account, lead_ids=[lead.pk], provenance=SYNC)
    return lead


def by_name(lead: Lead) -> dict[str, Stakeholder]:
    return {row.name: row for row in stakeholders_for_lead(lead=lead)}


def test_it_merges_contact_fields_and_catalog_elements_into_one_list(mapped_account):
    mirror_recorded_deal(mapped_account)
    rows = by_name(derive(mapped_account))

    assert set(rows) == {"Ann Lee", "Boris Petrov", "Chen Wu", "External counsel (Hart & Vale)"}
    ann, boris, chen, counsel = (rows[name] for name in sorted(rows))
    assert (ann.source, ann.contact.kommo_id, ann.catalog_element.kommo_id) == ("both", 6001, 7101)
    assert (boris.source, boris.contact.kommo_id, boris.catalog_element.kommo_id) == ("both", 6002, 7102)
    assert (chen.source, chen.contact.kommo_id, chen.catalog_element) == ("contact_field", 6003, None)
    assert (counsel.source, counsel.contact, counsel.catalog_element.kommo_id) == ("catalog", None, 7103)


def test_the_catalog_element_wins_over_the_contact_field(mapped_account):
    mirror_recorded_deal(mapped_account)
    ann = by_name(derive(mapped_account))["Ann Lee"]

    # Her contact says "User"; the deal's catalog element says "Decision maker" and "Approved".
    assert ann.role.code == "decision_maker"
    assert ann.approval_status == "approved"
    assert ann.last_touch == dt.datetime.fromtimestamp(1717200000, tz=dt.UTC)


def test_the_contact_field_fills_what_the_catalog_element_leaves_empty(mapped_account):
    mirror_recorded_deal(mapped_account)
    rows = by_name(derive(mapped_account))

    assert rows["Boris Petrov"].role.code == "lawyer"  # his element has an approval but no role
    assert rows["Boris Petrov"].approval_status == "pending"
    assert rows["Chen Wu"].role.code == "technical_evangelist"
    assert rows["Chen Wu"].approval_status == "unknown"
    assert rows["External counsel (Hart & Vale)"].role.code == "lawyer"
    assert rows["External counsel (Hart & Vale)"].approval_status == "rejected"


def test_an_unmapped_option_leaves_the_role_empty(mapped_account):
    FieldMapping.objects.get(account=mapped_account, attribute="role", source="contact_field").values.filter(
        enum_id=9002
    ).delete()
    mirror_recorded_deal(mapped_account)

    assert by_name(derive(mapped_account))["Chen Wu"].role is None


def test_without_contact_mappings_only_catalog_elements_are_stakeholders(account):
    map_account(account, contact=False)
    mirror_recorded_deal(account)
    rows = by_name(derive(account))

    assert set(rows) == {"Ann Lee", "Boris Petrov", "External counsel (Hart & Vale)"}
    assert rows["Ann Lee"].source == "catalog"
    assert rows["Ann Lee"].contact.kommo_id == 6001  # the element still names its contact


def test_without_catalog_mappings_only_contacts_are_stakeholders(account):
    map_account(account, catalog=False)
    mirror_recorded_deal(account)
    rows = by_name(derive(account))

    assert set(rows) == {"Ann Lee", "Boris Petrov", "Chen Wu"}
    assert rows["Ann Lee"].role.code == "user"
    assert {row.source for row in rows.values()} == {"contact_field"}


def test_deriving_again_changes_nothing_and_keeps_notes(mapped_account):
    mirror_recorded_deal(mapped_account)
    lead = derive(mapped_account)
    Stakeholder.objects.filter(lead=lead, name="Ann Lee").update(notes="Prefers calls")
    before = {row.pk: row.updated for row in Stakeholder.objects.all()}

    assert stakeholders_derive_for_leads(account=mapped_account, lead_ids=[lead.pk], provenance=SYNC) is False
    assert {row.pk: row.updated for row in Stakeholder.objects.all()} == before
    assert Stakeholder.objects.get(name="Ann Lee").notes == "Prefers calls"


def test_a_deleted_contact_is_no_longer_a_stakeholder(mapped_account):
    mirror_recorded_deal(mapped_account)
    lead = derive(mapped_account)
    Contact.objects.filter(account=mapped_account, kommo_id=6003).update(is_deleted=True)

    assert stakeholders_derive_for_leads(account=mapped_account, lead_ids=[lead.pk], provenance=SYNC) is True
    assert "Chen Wu" not in by_name(lead)


def test_a_deleted_deal_has_no_stakeholders(mapped_account):
    mirror_recorded_deal(mapped_account)
    lead = derive(mapped_account)
    Lead.objects.filter(pk=lead.pk).update(is_deleted=True)

    stakeholders_derive_for_leads(account=mapped_account, lead_ids=[lead.pk], provenance=SYNC)

    assert stakeholders_for_lead(lead=lead) == []


def test_derivation_of_many_deals_takes_a_fixed_number_of_queries(
    mapped_account, django_assert_max_num_queries
):
    mirror_recorded_deal(mapped_account)
    lead = Lead.objects.get(kommo_id=5001)
    contacts = list(Contact.objects.filter(account=mapped_account))
    for number in range(20):
        copy = Lead.objects.create(
            account=mapped_account,
            kommo_id=9000 + number,
            name=f"Copy {number}",
            pipeline_kommo_id=lead.pipeline_kommo_id,
            status_kommo_id=lead.status_kommo_id,
        )
        copy.contact_links.create(
            contact=contacts[number % 3], contact_kommo_id=contacts[number % 3].kommo_id
        )
    lead_ids = list(Lead.objects.values_list("pk", flat=True))

    with django_assert_max_num_queries(10):
        stakeholders_derive_for_leads(account=mapped_account, lead_ids=lead_ids, provenance=SYNC)

    assert sum(len(rows) for rows in stakeholders_for_leads(lead_ids=lead_ids).values()) == 4 + 20
