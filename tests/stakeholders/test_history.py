"""Every change of a stakeholder is one history row, whatever made it, and the state on any past day is
read back from those rows (``stakeholder_state_as_of``)."""

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from apps.flows import tasks as flow_tasks
from apps.flows.intake import intake_follow
from apps.flows.sync import account_events_sweep, field_changes_follow, mirror_follow, mirror_follow_as
from apps.kommo import types
from apps.kommo.models import WebhookEvent
from apps.kommo.models.mirror import Lead
from apps.kommo.provenance import MirrorSource, Provenance
from apps.kommo.services.mirror import (
    catalog_element_mark_deleted,
    catalog_elements_upsert_from_kommo,
    contacts_upsert_from_kommo,
)
from apps.kommo.services.sync import history_backfill
from apps.stakeholders.models import FieldMappingValue, Role, Stakeholder, StakeholderEvent
from apps.stakeholders.selectors import stakeholder_state_as_of
from apps.stakeholders.tasks import stakeholders_derive_account
from apps.users.models import User
from tests.stakeholders.conftest import event, mirror_recorded_deal, stakeholder_payload

pytestmark = pytest.mark.django_db

CREATED = dt.datetime.fromtimestamp(1717000000, tz=dt.UTC)  # every recorded contact and element
ANN_UPDATED = dt.datetime.fromtimestamp(1717200000, tz=dt.UTC)  # Ann Lee's element, last changed
WEBHOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "kommo" / "webhooks"
# What follows a write the webhook flow makes (it derives the stakeholders itself, as a webhook's).
webhook_follow = mirror_follow_as(Provenance(MirrorSource.WEBHOOK))


def element(kommo_id: int, **changes) -> dict:
    item = next(
        e
        for e in stakeholder_payload("catalog-elements.json")["_embedded"]["elements"]
        if e["id"] == kommo_id
    )
    return {**item, **changes}


def contact(kommo_id: int, **changes) -> dict:
    item = next(
        c for c in stakeholder_payload("contacts.json")["_embedded"]["contacts"] if c["id"] == kommo_id
    )
    return {**item, **changes}


def events(name: str, field: str | None = None) -> list[StakeholderEvent]:
    rows = StakeholderEvent.objects.filter(name=name).order_by("at", "id")
    return list(rows.filter(field=field) if field else rows)


def test_the_first_derivation_records_each_person_from_kommos_own_times(mapped_account):
    mirror_recorded_deal(mapped_account)

    presence = events("Ann Lee", "presence")
    assert [(e.old, e.new, e.at, e.source) for e in presence] == [(None, "Ann Lee", CREATED, "sync")]
    approval = events("Ann Lee", "approval_status")
    assert [(e.old, e.new, e.at) for e in approval] == [(None, "approved", ANN_UPDATED)]
    # Kommo has no decision day for it: the day Kommo last changed the element stands in.
    assert [e.new for e in events("Ann Lee", "approval_decided_at")] == [ANN_UPDATED.isoformat()]
    assert Stakeholder.objects.get(name="Ann Lee").approval_decided_at == ANN_UPDATED


def test_an_unchanged_rederivation_records_nothing(mapped_account):
    mirror_recorded_deal(mapped_account)
    before = StakeholderEvent.objects.count()

    mirror_recorded_deal(mapped_account)

    assert StakeholderEvent.objects.count() == before


def test_a_kommo_edit_seen_by_webhook_is_one_row_with_old_and_new(mapped_account):
    mirror_recorded_deal(mapped_account)
    chen = types.Contact.from_api(contact(6003))
    fields = [dict(chen.raw["custom_fields_values"][0], values=[{"value": "Blocker", "enum_id": 9006}])]
    edited = dt.datetime.fromtimestamp(1717900000, tz=dt.UTC)

    contacts_upsert_from_kommo(
        account=mapped_account,
        contacts=[types.Contact.from_api(contact(6003, updated_at=1717900000, custom_fields_values=fields))],
        follow=webhook_follow,
    )

    (row,) = events("Chen Wu", "role")[1:]
    blocker = Role.objects.get(code="blocker")
    assert (row.new, row.at, row.source, row.user_id) == (blocker.pk, edited, "webhook", None)
    assert row.old == Role.objects.get(code="technical_evangelist").pk


def test_a_kommo_edit_through_the_webhook_flow_is_recorded_as_the_webhooks(mapped_account, kommo):
    """The webhook batch's flow re-fetches the contact a delivery names, mirrors it and derives the deal's
    stakeholders itself: the history says webhook."""
    mirror_recorded_deal(mapped_account)
    chen = contact(6003, updated_at=1717900000)
    chen["custom_fields_values"] = [
        dict(chen["custom_fields_values"][0], values=[{"value": "Blocker", "enum_id": 9006}])
    ]
    kommo.contacts[6003] = chen
    body = (WEBHOOKS / "contacts-update.sandbox.form.txt").read_bytes()
    event = WebhookEvent.objects.create(
        account=mapped_account,
        body=body.replace(b"%5Bid%5D=7201", b"%5Bid%5D=6003"),
        content_type="application/x-www-form-urlencoded",
    )

    flow_tasks.webhook_process(event.pk)

    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED, event.error
    (row,) = events("Chen Wu", "role")[1:]
    assert (row.new, row.source, row.user_id) == (Role.objects.get(code="blocker").pk, "webhook", None)


def test_the_events_sweep_flow_records_what_it_finds_as_the_syncs(mapped_account, kommo):
    """The events sweep's flow: the deal an event names is re-fetched and derived again (Chen Wu was
    unlinked from it in Kommo: he leaves), a call touches the person it was with; both are the sync's."""
    mirror_recorded_deal(mapped_account)
    deal = stakeholder_payload("lead.json")
    deal["_embedded"]["contacts"] = [c for c in deal["_embedded"]["contacts"] if c["id"] != 6003]
    deal["updated_at"] += 100
    kommo.leads[5001] = deal
    now = int(timezone.now().timestamp())
    kommo.events = [
        event("01unlinked", "entity_unlinked", "lead", 5001, now - 60, [{"link": {"contact": {"id": 6003}}}]),
        event("01called", "outgoing_call", "contact", 6002, now - 120, [{"note": {"id": 1}}]),
    ]

    account_events_sweep(account_id=mapped_account.pk)

    (left,) = events("Chen Wu", "presence")[1:]
    assert (left.old, left.new, left.source, left.user_id) == ("Chen Wu", None, "sync", None)
    touched = events("Boris Petrov", "last_touch")[-1]
    assert (touched.new, touched.source, touched.user_id) == (
        dt.datetime.fromtimestamp(now - 120, tz=dt.UTC).isoformat(),
        "sync",
        None,
    )


def test_a_sync_sees_an_objection_and_a_person_leaving(mapped_account):
    mirror_recorded_deal(mapped_account)
    weight = {"field_id": 880104, "field_type": "numeric", "values": [{"value": "0.7"}]}
    from apps.stakeholders.models import FieldMapping

    FieldMapping.objects.create(
        account=mapped_account,
        attribute="objection_weight",
        source="catalog_field",
        field_id=880104,
        catalog_id=7001,
    )
    ann = element(7101, updated_at=1717500000)
    ann["custom_fields_values"] = [*ann["custom_fields_values"], weight]

    catalog_elements_upsert_from_kommo(
        account=mapped_account, elements=[types.CatalogElement.from_api(ann)], follow=mirror_follow
    )
    catalog_element_mark_deleted(account=mapped_account, kommo_id=7103, follow=mirror_follow)

    raised = dt.datetime.fromtimestamp(1717500000, tz=dt.UTC)
    assert [(e.new, e.at, e.source) for e in events("Ann Lee", "objection_weight")] == [
        ("0.7", raised, "sync")
    ]
    assert [e.new for e in events("Ann Lee", "objection_raised_at")] == [raised.isoformat()]
    (left,) = events("External counsel (Hart & Vale)", "presence")[1:]
    assert (left.old, left.new) == ("External counsel (Hart & Vale)", None)


def test_the_state_as_of_a_day_is_read_back_from_the_history(mapped_account):
    mirror_recorded_deal(mapped_account)
    lead = Lead.objects.get(kommo_id=5001)
    rejected = element(7101, updated_at=1718000000)
    rejected["custom_fields_values"][1]["values"] = [{"value": "Rejected", "enum_id": 9203}]
    catalog_elements_upsert_from_kommo(
        account=mapped_account, elements=[types.CatalogElement.from_api(rejected)], follow=webhook_follow
    )
    catalog_element_mark_deleted(account=mapped_account, kommo_id=7103, follow=mirror_follow)
    removed_at = StakeholderEvent.objects.get(field="presence", new__isnull=True).at

    before = stakeholder_state_as_of(lead=lead, when=CREATED - dt.timedelta(seconds=1))
    assert before == {lead.pk: []}

    # Between Kommo's creation of the people and their last change: present, values not known yet.
    early = {s.name: s for s in stakeholder_state_as_of(lead=lead, when=CREATED)[lead.pk]}
    assert set(early) == {"Ann Lee", "Boris Petrov", "Chen Wu", "External counsel (Hart & Vale)"}
    assert early["Ann Lee"].approval_status == "unknown"

    june = {s.name: s for s in stakeholder_state_as_of(account=mapped_account, when=ANN_UPDATED)[lead.pk]}
    assert june["Ann Lee"].approval_status == "approved"
    assert june["Ann Lee"].role_id == Role.objects.get(code="decision_maker").pk
    assert june["Ann Lee"].approval_decided_at == ANN_UPDATED

    later = {
        s.name: s
        for s in stakeholder_state_as_of(
            lead_ids=[lead.pk], when=dt.datetime.fromtimestamp(1718000000, tz=dt.UTC)
        )[lead.pk]
    }
    assert later["Ann Lee"].approval_status == "rejected"
    assert "External counsel (Hart & Vale)" in later

    now = {s.name for s in stakeholder_state_as_of(lead=lead, when=removed_at)[lead.pk]}
    assert "External counsel (Hart & Vale)" not in now
    assert now == set(Stakeholder.objects.filter(lead=lead).values_list("name", flat=True))


def test_the_state_as_of_reports_an_approval_past_its_roles_expiry(mapped_account):
    mirror_recorded_deal(mapped_account)
    lead = Lead.objects.get(kommo_id=5001)

    (ann,) = [s for s in stakeholder_state_as_of(lead=lead, when=ANN_UPDATED)[lead.pk] if s.name == "Ann Lee"]

    assert ann.approval_state(when=ANN_UPDATED + dt.timedelta(days=29), valid_days=30) == "approved"
    assert ann.approval_state(when=ANN_UPDATED + dt.timedelta(days=30), valid_days=30) == "expired"
    assert ann.approval_state(when=ANN_UPDATED + dt.timedelta(days=300), valid_days=None) == "approved"


def test_a_change_on_the_manager_page_is_recorded_as_the_managers(client, mapped_account, kommo):
    mirror_recorded_deal(mapped_account)
    lead = Lead.objects.get(kommo_id=5001)
    chris = User.objects.create_user("chris", password="secret-pass-1", kommo_user_id=504141)
    chris.groups.add(Group.objects.get(name="Manager"))
    client.force_login(chris)
    boris = Stakeholder.objects.get(name="Boris Petrov")
    prefix = f"s{boris.pk}"

    client.post(
        reverse("stakeholders:stakeholder_update", args=[lead.pk, boris.pk]),
        {
            f"{prefix}-role": boris.role_id,
            f"{prefix}-approval_status": "approved",
            f"{prefix}-last_touch": "",
        },
    )

    (row,) = events("Boris Petrov", "approval_status")[1:]
    assert (row.old, row.new, row.source, row.user_id) == ("pending", "approved", "manager", chris.pk)


def test_a_person_added_on_the_manager_page_is_the_managers_though_derived_from_the_deals_re_read(
    client, mapped_account, kommo
):
    """Adding a person creates the contact in Kommo, links it to the deal, then re-reads the deal and
    mirrors it, as a sync would: the person is derived on that re-read, and the history records the
    manager who added them, for every row."""
    mirror_recorded_deal(mapped_account)
    lead = Lead.objects.get(kommo_id=5001)
    kommo.leads[lead.kommo_id] = stakeholder_payload("lead.json")
    chris = User.objects.create_user("chris", password="secret-pass-1", kommo_user_id=504141)
    chris.groups.add(Group.objects.get(name="Manager"))
    client.force_login(chris)

    response = client.post(
        reverse("stakeholders:stakeholder_add", args=[lead.pk]),
        {
            "add-person": "new_contact",
            "add-name": "Dora New",
            "add-role": Role.objects.get(code="user").pk,
            "add-approval_status": "unknown",
        },
    )

    assert response.status_code == 302
    assert kommo.calls[-1].startswith(f"GET /api/v4/leads/{lead.kommo_id}")  # the re-read, last
    rows = events("Dora New")
    assert [e.field for e in rows] == ["presence", "role"]
    assert {(e.source, e.user_id) for e in rows} == {("manager", chris.pk)}


def test_a_rederivation_after_the_mappings_changed_is_recorded_as_the_syncs(mapped_account):
    """The mappings now read differently what the sync mirrored: the change is the sync's."""
    mirror_recorded_deal(mapped_account)
    influencer = Role.objects.get(code="influencer")
    values = FieldMappingValue.objects.filter(mapping__source="contact_field")
    values.filter(role=influencer).delete()
    values.filter(enum_id=9002).update(role=influencer)  # Chen Wu's option: technical evangelist before

    stakeholders_derive_account(mapped_account.pk)

    (row,) = events("Chen Wu", "role")[1:]
    assert (row.new, row.source, row.user_id) == (influencer.pk, "sync", None)


def test_intakes_writes_are_recorded_as_intakes(mapped_account):
    mirror_recorded_deal(mapped_account)
    weight = Decimal("0.3")
    from apps.stakeholders.models import FieldMapping

    FieldMapping.objects.create(
        account=mapped_account,
        attribute="objection_weight",
        source="catalog_field",
        field_id=880104,
        catalog_id=7001,
    )
    ann = element(7101, updated_at=1717500000)
    ann["custom_fields_values"] = [
        *ann["custom_fields_values"],
        {"field_id": 880104, "field_type": "numeric", "values": [{"value": str(weight)}]},
    ]
    catalog_elements_upsert_from_kommo(
        account=mapped_account, elements=[types.CatalogElement.from_api(ann)], follow=intake_follow
    )

    assert [e.source for e in events("Ann Lee", "objection_weight")] == ["intake"]


def test_a_decision_keeps_the_day_the_approval_was_requested(mapped_account):
    mirror_recorded_deal(mapped_account)
    requested = Stakeholder.objects.get(name="Boris Petrov").approval_requested_at
    assert requested is not None  # pending, with no day in Kommo: the day the portal saw it
    approved = element(7102, updated_at=1718000000)
    approved["custom_fields_values"][0]["values"] = [{"value": "Approved", "enum_id": 9202}]

    catalog_elements_upsert_from_kommo(
        account=mapped_account, elements=[types.CatalogElement.from_api(approved)], follow=mirror_follow
    )

    boris = Stakeholder.objects.get(name="Boris Petrov")
    assert (boris.approval_status, boris.approval_requested_at) == ("approved", requested)
    assert [e.new for e in events("Boris Petrov", "approval_requested_at")] == [requested.isoformat()]


def _field_event(event_id: str, entity: str, entity_id: int, field_id: int, before, after, at: int) -> dict:
    """A ``custom_field_value_changed`` event as Kommo's events log lists it."""

    def values(items):
        return [
            {"custom_field_value": {"field_id": field_id, "field_type": 4, "enum_id": enum, "text": text}}
            for enum, text in items
        ]

    kind = "custom_field_value_changed"
    return event(event_id, kind, entity, entity_id, at, after=values(after), before=values(before))


def test_past_field_changes_read_from_kommos_events_date_the_history_once(
    mapped_account, kommo_client, kommo
):
    """Ann Lee's element says decision maker and approved; Kommo's events say she was given the role 10 hours
    after her element was created, asked at 20 and approved at 30 (before the element's last change): the
    state at each hour follows, and reading the same events again (a second backfill) adds nothing. The
    history backfill, run two days after her element was created, reads them from the fake Kommo's events
    (filtered by the period it asks for) and gives them to the flows' ``field_changes_follow``."""
    mirror_recorded_deal(mapped_account)
    hour = 3600
    start = 1717000000  # when her contact and element were created
    changes = [
        _field_event("e1", "catalog_7001", 7101, 880101, [], [(9101, "Decision maker")], start + 10 * hour),
        _field_event("e2", "catalog_7001", 7101, 880102, [], [(9201, "Pending")], start + 20 * hour),
        _field_event(
            "e3", "catalog_7001", 7101, 880102, [(9201, "Pending")], [(9202, "Approved")], start + 30 * hour
        ),
        # Ann's contact's role field: her element maps the role, so the element's history wins.
        _field_event("e4", "contact", 6001, 880001, [], [(9003, "User")], start + 5 * hour),
        # A deal's field and an unmapped field say nothing about stakeholders.
        _field_event("e5", "lead", 5001, 880101, [], [(9101, "Decision maker")], start + 5 * hour),
        _field_event("e6", "catalog_7001", 7101, 123456, [], [(None, "x")], start + 5 * hour),
    ]
    typed = [types.Event.from_api(event).field_change() for event in changes]
    assert all(change is not None for change in typed)

    kommo.events = changes
    with time_machine.travel(dt.datetime.fromtimestamp(start + 48 * hour, tz=dt.UTC), tick=False):
        for _ in range(2):
            history_backfill(
                account=mapped_account, days=2, client=kommo_client, field_changes_follow=field_changes_follow
            )
    asked = kommo.calls_to("/api/v4/events")
    assert [(q["filter[created_at][from]"], q["filter[created_at][to]"]) for q in asked] == [
        ([str(start)], [str(start + 48 * hour)])
    ] * 2

    ann = Stakeholder.objects.get(name="Ann Lee")
    past = StakeholderEvent.objects.filter(stakeholder_id=ann.pk).exclude(kommo_event_id="")
    assert sorted(past.values_list("kommo_event_id", "field")) == [
        ("e1", "role"),
        ("e2", "approval_requested_at"),
        ("e2", "approval_status"),
        ("e3", "approval_decided_at"),
        ("e3", "approval_status"),
    ]
    assert set(past.values_list("source", "user_id")) == {("sync", None)}

    def state(hours: int):
        when = dt.datetime.fromtimestamp(start + hours * hour, tz=dt.UTC)
        (person,) = [
            p for p in stakeholder_state_as_of(when=when, lead=ann.lead)[ann.lead_id] if p.name == "Ann Lee"
        ]
        return person.role_id, person.approval_status, person.approval_decided_at

    buyer = Role.objects.get(code="decision_maker").pk
    assert state(8) == (None, "unknown", None)
    assert state(25) == (buyer, "pending", None)
    assert state(31) == (buyer, "approved", dt.datetime.fromtimestamp(start + 30 * hour, tz=dt.UTC))
