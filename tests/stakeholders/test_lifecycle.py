"""A stakeholder's approval (requested → approved / rejected → expired, re-requested) and objection (raised,
edited, resolved) on the deal page: written to the person's Stakeholders element in Kommo, read back from
Kommo's answer, each change one history row, and each a touch."""

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.urls import reverse

from apps.kommo.models.mirror import Lead
from apps.stakeholders.models import FieldMapping, Role, Stakeholder, StakeholderEvent
from apps.users.models import User
from tests.stakeholders.conftest import CATALOG_ID, mirror_recorded_deal
from tests.support.fake_kommo import FakeKommo

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
FIELDS = {  # the catalog fields bootstrap adds, as this account's ids
    "approval_requested": 880105,
    "approval_decided": 880106,
    "objection": 880107,
    "objection_weight": 880104,
    "objection_raised": 880108,
    "objection_resolved": 880109,
}

TYPES = {880103: "date", 880104: "numeric", 880105: "date", 880106: "date", 880107: "textarea"}
TYPES |= {880108: "date", 880109: "date"}


@pytest.fixture
def deal(mapped_account) -> Lead:
    for attribute, field_id in FIELDS.items():
        FieldMapping.objects.create(
            account=mapped_account,
            attribute=attribute,
            source="catalog_field",
            field_id=field_id,
            catalog_id=CATALOG_ID,
        )
    mirror_recorded_deal(mapped_account)
    return Lead.objects.get(kommo_id=5001)


@pytest.fixture
def manager(client):
    user = User.objects.create_user("chris", password="secret-pass-1", kommo_user_id=504141)
    user.groups.add(Group.objects.get(name="Manager"))
    client.force_login(user)
    return user


@pytest.fixture
def kommo(kommo: FakeKommo) -> FakeKommo:
    """The fake Kommo holding the recorded Stakeholders elements (tests/stakeholders/conftest.py), with the
    types of the fields bootstrap adds."""
    kommo.field_types.update(TYPES)
    return kommo


def patches(kommo: FakeKommo) -> list[list[dict]]:
    """The bodies of the element updates the portal sent, in order."""
    return kommo.bodies("PATCH", f"/api/v4/catalogs/{CATALOG_ID}/elements")


def written(kommo: FakeKommo, field_id: int):
    last = patches(kommo)[-1][0]["custom_fields_values"]
    return next((f["values"] for f in last if f["field_id"] == field_id), "not written")


def post(client, name: str, deal: Lead, stakeholder: Stakeholder, data=None):
    return client.post(
        reverse(f"stakeholders:{name}", args=[deal.pk, stakeholder.pk]), data or {}, follow=True
    )


def test_an_approval_is_requested_given_and_expires_after_its_roles_days(client, deal, manager, kommo):
    Role.objects.filter(code="decision_maker").update(approval_valid_days=30)
    ann = Stakeholder.objects.get(name="Ann Lee")
    prefix = f"s{ann.pk}"

    with time_machine.travel(T0, tick=False):
        page = post(client, "approval_request", deal, ann)
    assert "Ann Lee: approval requested in Kommo." in page.content.decode()
    assert written(kommo, FIELDS["approval_requested"]) == [{"value": int(T0.timestamp())}]
    ann.refresh_from_db()
    assert (ann.approval_status, ann.approval_requested_at, ann.last_touch) == ("pending", T0, T0)

    decided = T0 + dt.timedelta(days=2)
    with time_machine.travel(decided, tick=False):
        post(
            client,
            "stakeholder_update",
            deal,
            ann,
            {
                f"{prefix}-role": ann.role_id,
                f"{prefix}-approval_status": "approved",
                f"{prefix}-last_touch": "",
            },
        )
    ann.refresh_from_db()
    assert (ann.approval_status, ann.approval_decided_at) == ("approved", decided)
    assert written(kommo, FIELDS["approval_decided"]) == [{"value": int(decided.timestamp())}]

    assert ann.approval_state(decided + dt.timedelta(days=29)) == "approved"
    assert ann.approval_state(decided + dt.timedelta(days=30)) == "expired"
    with time_machine.travel(decided + dt.timedelta(days=31), tick=False):
        page = client.get(reverse("stakeholders:deal_detail", args=[deal.pk])).content.decode()
    assert '<span class="tag expired">Expired</span>' in page

    again = decided + dt.timedelta(days=31)
    with time_machine.travel(again, tick=False):
        post(client, "approval_request", deal, ann)
    ann.refresh_from_db()
    assert (ann.approval_status, ann.approval_requested_at) == ("pending", again)

    history = [
        (e.field, e.old, e.new, e.source, e.user_id)
        for e in StakeholderEvent.objects.filter(stakeholder_id=ann.pk, field="approval_status").order_by(
            "at", "id"
        )
    ]
    assert history == [
        ("approval_status", None, "approved", "sync", None),
        ("approval_status", "approved", "pending", "manager", manager.pk),
        ("approval_status", "pending", "approved", "manager", manager.pk),
        ("approval_status", "approved", "pending", "manager", manager.pk),
    ]


def test_an_objection_is_raised_edited_and_resolved(client, deal, manager, kommo):
    boris = Stakeholder.objects.get(name="Boris Petrov")
    prefix = f"o{boris.pk}"

    with time_machine.travel(T0, tick=False):
        page = post(
            client,
            "objection_save",
            deal,
            boris,
            {f"{prefix}-objection": "No SSO", f"{prefix}-objection_weight": "0.6", "action": "save"},
        )
    assert "Boris Petrov: objection raised in Kommo." in page.content.decode()
    assert written(kommo, FIELDS["objection"]) == [{"value": "No SSO"}]
    assert written(kommo, FIELDS["objection_raised"]) == [{"value": int(T0.timestamp())}]
    boris.refresh_from_db()
    assert boris.objection_open and boris.objection_weight == Decimal("0.6")
    assert (boris.objection_raised_at, boris.last_touch) == (T0, T0)

    later = T0 + dt.timedelta(days=3)
    with time_machine.travel(later, tick=False):
        post(
            client,
            "objection_save",
            deal,
            boris,
            {f"{prefix}-objection": "No SSO, no SCIM", f"{prefix}-objection_weight": "0.8", "action": "save"},
        )
    boris.refresh_from_db()
    assert (boris.objection, boris.objection_raised_at) == ("No SSO, no SCIM", T0)  # still the same one

    resolved = T0 + dt.timedelta(days=5)
    with time_machine.travel(resolved, tick=False):
        page = post(client, "objection_save", deal, boris, {"action": "resolve"})
    assert "Boris Petrov: objection resolved in Kommo." in page.content.decode()
    boris.refresh_from_db()
    assert not boris.objection_open
    assert (boris.objection_resolved_at, boris.last_touch) == (resolved, resolved)

    # Raised again: a new objection, no longer resolved.
    again = T0 + dt.timedelta(days=9)
    with time_machine.travel(again, tick=False):
        post(
            client,
            "objection_save",
            deal,
            boris,
            {f"{prefix}-objection": "Price", f"{prefix}-objection_weight": "0.8", "action": "save"},
        )
    boris.refresh_from_db()
    assert boris.objection_open and (boris.objection_raised_at, boris.objection_resolved_at) == (again, None)
    assert written(kommo, FIELDS["objection_resolved"]) is None  # cleared in Kommo

    fields = list(
        StakeholderEvent.objects.filter(stakeholder_id=boris.pk, source="manager")
        .order_by("at", "id")
        .values_list("field", flat=True)
    )
    assert fields.count("objection_resolved_at") == 2
    assert fields.count("objection") == 3


def test_an_objection_needs_a_text_or_a_weight(client, deal, manager, kommo):
    boris = Stakeholder.objects.get(name="Boris Petrov")
    prefix = f"o{boris.pk}"

    response = client.post(
        reverse("stakeholders:objection_save", args=[deal.pk, boris.pk]),
        {f"{prefix}-objection": " ", f"{prefix}-objection_weight": "", "action": "save"},
    )

    assert response.status_code == 400
    assert "Say what the objection is, or how much it weighs." in response.content.decode()
    assert patches(kommo) == []


def test_the_deal_page_shows_each_persons_timeline(client, deal, manager, kommo):
    boris = Stakeholder.objects.get(name="Boris Petrov")
    prefix = f"o{boris.pk}"
    post(client, "objection_save", deal, boris, {f"{prefix}-objection": "No SSO", "action": "save"})

    page = client.get(reverse("stakeholders:deal_detail", args=[deal.pk])).content.decode()

    assert "Open objection: “No SSO”" in page
    assert "History (" in page
    assert "— → No SSO" in page
    assert "chris (manager page)" in page
    assert "joined the deal" in page
