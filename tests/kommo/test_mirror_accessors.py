"""The mirror's typed accessors: what the apps above the boundary read instead of ``raw``."""

from decimal import Decimal

import pytest

from apps.flows.sync import mirror_follow
from apps.kommo.models import Contact, Lead
from apps.kommo.services.mirror import contacts_upsert_from_kommo, lead_upsert_from_kommo
from apps.kommo.types import Contact as KommoContact
from tests.kommo.mirror_support import account_create, lead, lead_payload
from tests.kommo.payloads import payload

pytestmark = pytest.mark.django_db


def test_a_deal_gives_its_typed_payload_and_tags_and_none_for_a_payload_it_cannot_read():
    account = account_create()
    data = lead_payload(_embedded={"tags": [{"id": 1, "name": "webinar"}, {"id": 2, "name": "vip"}]})
    deal = lead_upsert_from_kommo(account=account, data=lead(**data), follow=mirror_follow).obj

    assert deal.payload() is not None and deal.payload().id == deal.kommo_id
    assert deal.tag_names == ("webinar", "vip")
    Lead.objects.filter(pk=deal.pk).update(raw={"id": "not a number"})
    deal.refresh_from_db()
    assert deal.payload() is None and deal.tag_names == ()
    Lead.objects.filter(pk=deal.pk).update(raw={**data, "id": deal.kommo_id + 1})
    deal.refresh_from_db()
    assert deal.payload() is None  # another deal's payload is not this deal


def test_a_contact_gives_its_field_values_by_id_and_its_linked_elements():
    account = account_create()
    data = payload("contacts-list.json")["_embedded"]["contacts"][0]
    contacts_upsert_from_kommo(account=account, contacts=[KommoContact.from_api(data)], follow=mirror_follow)
    raw = {
        **data,
        "custom_fields_values": [
            {"field_id": 7, "field_type": "numeric", "values": [{"value": "2.5"}]},
            {"field_id": "broken"},  # skipped, not fatal
        ],
        "_embedded": {"catalog_elements": [{"id": 11}, {"id": "x"}, {"id": 12}]},
    }
    Contact.objects.filter(account=account, kommo_id=data["id"]).update(raw=raw)
    contact = Contact.objects.get(account=account, kommo_id=data["id"])

    assert list(contact.field_values) == [7] and contact.field_values[7].value == Decimal("2.5")
    assert contact.linked_element_ids == frozenset({11, 12})
