"""A note, call or message in Kommo on a contact (or on a deal, for its main contact) is a touch: the
stakeholder's last touch follows it, through the webhook's dispatch and the one derivation, and the
history records it."""

import datetime as dt
from pathlib import Path

import pytest
import responses
from django.utils import timezone

from apps.flows import tasks as flow_tasks
from apps.flows.sync import mirror_follow, touches_follow
from apps.kommo.models import KommoAccount, WebhookEvent
from apps.kommo.models.mirror import LeadContact
from apps.kommo.provenance import MirrorSource, Provenance
from apps.kommo.services.sync import events_reconcile
from apps.kommo.webhooks.dispatch import Touch, plan_items
from apps.kommo.webhooks.parser import parse
from apps.stakeholders.models import Stakeholder, StakeholderEvent
from apps.stakeholders.services import stakeholders_touch
from tests.stakeholders.conftest import event, mirror_recorded_deal

pytestmark = pytest.mark.django_db

WEBHOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "kommo" / "webhooks"
CALLED = dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.UTC)


def test_a_text_note_or_a_call_is_a_touch_and_a_service_message_is_not():
    body = (WEBHOOKS / "contacts-note.sandbox.form.txt").read_bytes()

    plan, handled, unknown = plan_items(parse(body).items)
    service, _, _ = plan_items(parse(body.replace(b"%5Bnote_type%5D=4", b"%5Bnote_type%5D=25")).items)

    assert handled and unknown == []
    assert plan.touches == [
        Touch(entity="contact", kommo_id=7201, at=dt.datetime.fromtimestamp(1732000700, tz=dt.UTC))
    ]
    assert (plan.contacts, plan.leads) == (set(), set())  # nothing to re-fetch
    assert service.touches == []


def announce(account: KommoAccount, *touches: Touch) -> None:
    stakeholders_touch(account=account, touches=touches, provenance=Provenance(MirrorSource.WEBHOOK))


def test_a_call_with_a_contact_touches_its_stakeholder(mapped_account):
    mirror_recorded_deal(mapped_account)
    chen = Stakeholder.objects.get(name="Chen Wu")

    announce(mapped_account, Touch("contact", chen.contact.kommo_id, CALLED))

    chen.refresh_from_db()
    assert (chen.last_touch, chen.activity_at) == (CALLED, CALLED)
    (event,) = StakeholderEvent.objects.filter(stakeholder_id=chen.pk, field="last_touch", source="webhook")
    assert (event.new, event.at) == (CALLED.isoformat(), CALLED)


def test_a_note_on_the_deal_touches_its_main_contact_only(mapped_account):
    mirror_recorded_deal(mapped_account)
    before = dict(Stakeholder.objects.values_list("name", "last_touch"))
    link = LeadContact.objects.get(lead__kommo_id=5001, is_main=True)
    main = Stakeholder.objects.get(lead=link.lead, contact=link.contact)

    announce(mapped_account, Touch("lead", 5001, CALLED))

    after = dict(Stakeholder.objects.values_list("name", "last_touch"))
    assert after[main.name] == CALLED
    assert {name: at for name, at in after.items() if name != main.name} == {
        name: at for name, at in before.items() if name != main.name
    }


def test_an_older_activity_than_the_last_touch_changes_nothing(mapped_account):
    mirror_recorded_deal(mapped_account)
    ann = Stakeholder.objects.get(name="Ann Lee")
    assert ann.last_touch is not None
    count = StakeholderEvent.objects.count()

    announce(mapped_account, Touch("contact", ann.contact.kommo_id, ann.last_touch - dt.timedelta(days=3)))

    ann.refresh_from_db()
    assert ann.last_touch == Stakeholder.objects.get(pk=ann.pk).last_touch
    assert StakeholderEvent.objects.count() == count


def test_a_meeting_completed_on_a_deal_or_a_contact_is_a_touch_and_a_follow_up_is_not():
    body = (WEBHOOKS / "task-update-complete.doc.form.txt").read_bytes()  # a follow-up (task_type 1)
    meeting = body.replace(b"%5Btask_type%5D=1", b"%5Btask_type%5D=2")
    on_contact = meeting.replace(b"%5Belement_type%5D=2", b"%5Belement_type%5D=1")
    still_open = meeting.replace(b"%5Bstatus%5D=1", b"%5Bstatus%5D=0")
    done = dt.datetime.fromtimestamp(1726579269, tz=dt.UTC)  # the task's updated_at

    follow_up, _, _ = plan_items(parse(body).items)
    on_deal, _, _ = plan_items(parse(meeting).items)
    with_contact, _, _ = plan_items(parse(on_contact).items)
    planned, _, _ = plan_items(parse(still_open).items)

    assert follow_up.touches == [] and planned.touches == []
    assert on_deal.touches == [Touch(entity="lead", kommo_id=15320411, at=done)]
    assert on_deal.leads == {15320411}  # re-fetched as before, for its closest task
    assert with_contact.touches == [Touch(entity="contact", kommo_id=15320411, at=done)]


def test_a_meeting_completed_with_a_contact_is_its_last_touch_through_webhook_processing(mapped_account):
    """The ``task[update]`` of a completed meeting on a contact, through the worker's path: no call to
    Kommo (a task on a contact changes nothing mirrored), the touch at the task's last change."""
    mirror_recorded_deal(mapped_account)
    chen = Stakeholder.objects.get(name="Chen Wu")
    done = timezone.now().replace(microsecond=0) - dt.timedelta(hours=1)
    body = (WEBHOOKS / "task-update-complete.doc.form.txt").read_bytes()
    body = body.replace(b"%5Btask_type%5D=1", b"%5Btask_type%5D=2")
    body = body.replace(b"%5Belement_type%5D=2", b"%5Belement_type%5D=1")
    body = body.replace(b"%5Belement_id%5D=15320411", f"%5Belement_id%5D={chen.contact.kommo_id}".encode())
    body = body.replace(b"%5Bupdated_at%5D=1726579269", f"%5Bupdated_at%5D={int(done.timestamp())}".encode())
    event = WebhookEvent.objects.create(
        account=mapped_account, body=body, content_type="application/x-www-form-urlencoded"
    )

    with responses.RequestsMock():
        flow_tasks.webhook_process(event.pk)

    event.refresh_from_db()
    chen.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED, event.error
    assert chen.last_touch == done
    (row,) = StakeholderEvent.objects.filter(stakeholder_id=chen.pk, field="last_touch", source="webhook")
    assert row.at == done


# -- the events sweep -------------------------------------------------------------------------------------


def test_the_events_sweep_touches_for_a_note_a_call_and_a_completed_meeting_but_not_a_follow_up(
    mapped_account, kommo_client, kommo
):
    mirror_recorded_deal(mapped_account)
    chen = Stakeholder.objects.get(name="Chen Wu")
    main = Stakeholder.objects.get(lead__kommo_id=5001, contact__kommo_id=6001)  # the deal's main contact
    now = int(timezone.now().timestamp())
    called, met, followed_up = now - 7200, now - 3600, now - 60
    kommo.events = [
        event("01called", "outgoing_call", "contact", chen.contact.kommo_id, called, [{"note": {"id": 1}}]),
        event("01meeting", "task_completed", "task", 50000001, met, []),
        event("01followup", "task_completed", "task", 50000002, followed_up, []),
    ]
    tasks = [
        {"id": 50000001, "task_type_id": 2, "entity_type": "leads", "entity_id": 5001, "is_completed": True},
        {"id": 50000002, "task_type_id": 1, "entity_type": "leads", "entity_id": 5001, "is_completed": True},
    ]
    kommo.tasks = {task["id"]: task | {"text": "t", "complete_till": now} for task in tasks}

    events_reconcile(
        account=mapped_account, client=kommo_client, follow=mirror_follow, touches_follow=touches_follow
    )

    read = {call.split("?")[0] for call in kommo.calls}
    assert {"GET /api/v4/events", "GET /api/v4/tasks"} <= read  # the events, then the meetings' tasks
    assert read & {"GET /api/v4/leads/notes", "GET /api/v4/contacts/notes"}  # and the mail notes (none)
    chen.refresh_from_db()
    main.refresh_from_db()
    at = {ts: dt.datetime.fromtimestamp(ts, tz=dt.UTC) for ts in (called, met)}
    assert chen.last_touch == at[called]
    assert main.last_touch == at[met]  # the meeting on the deal, not the later follow-up
    rows = StakeholderEvent.objects.filter(field="last_touch", source="sync")
    assert {(row.stakeholder_id, row.at) for row in rows} >= {(chen.pk, at[called]), (main.pk, at[met])}
