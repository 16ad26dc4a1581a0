"""The mirror's writes are followed by what the caller gives them (the flows' ``mirror_follow``): the
stakeholder table follows without the test calling it."""

import pytest

from apps.flows.sync import mirror_follow
from apps.kommo import types
from apps.kommo.services.mirror import catalog_element_mark_deleted, contacts_upsert_from_kommo
from apps.stakeholders.models import Stakeholder
from tests.stakeholders.conftest import mirror_recorded_deal, stakeholder_payload

pytestmark = pytest.mark.django_db


def contact_payload(kommo_id: int, **changes) -> types.Contact:
    item = next(
        c for c in stakeholder_payload("contacts.json")["_embedded"]["contacts"] if c["id"] == kommo_id
    )
    return types.Contact.from_api({**item, **changes})


def test_upserting_the_deal_derives_its_stakeholders(mapped_account):
    mirror_recorded_deal(mapped_account)

    assert Stakeholder.objects.filter(lead__kommo_id=5001).count() == 4


def test_upserting_a_contact_rederives_its_deals(mapped_account):
    mirror_recorded_deal(mapped_account)
    chen = contact_payload(6003)
    fields = [dict(chen.raw["custom_fields_values"][0], values=[{"value": "Blocker", "enum_id": 9006}])]

    contacts_upsert_from_kommo(
        account=mapped_account,
        contacts=[contact_payload(6003, updated_at=1717900000, custom_fields_values=fields)],
        follow=mirror_follow,
    )

    assert Stakeholder.objects.get(name="Chen Wu").role.code == "blocker"


def test_deleting_a_catalog_element_rederives_its_deals(mapped_account):
    mirror_recorded_deal(mapped_account)

    catalog_element_mark_deleted(account=mapped_account, kommo_id=7103, follow=mirror_follow)

    assert not Stakeholder.objects.filter(name__startswith="External counsel").exists()


def test_an_unchanged_payload_is_followed_by_nothing(mapped_account):
    mirror_recorded_deal(mapped_account)
    heard = []

    def listen(account, result):
        heard.append(result)

    contacts_upsert_from_kommo(account=mapped_account, contacts=[contact_payload(6003)], follow=listen)

    assert heard == []
