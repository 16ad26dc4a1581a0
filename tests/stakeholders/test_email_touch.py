"""An e-mail on a deal or a contact is a touch: the Digital Pipeline's ``mail_in`` hook (dated when its
delivery arrived), the mail note's webhook (dated at the note), and the events sweep's read of the mail
notes (Kommo's events log has none). Kommo's API is answered by the fake Kommo."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import responses
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.flows import tasks as flow_tasks
from apps.flows.sync import mirror_follow, touches_follow
from apps.kommo.exceptions import KommoServerError
from apps.kommo.models import SyncState, WebhookEvent
from apps.kommo.models.mirror import LeadContact
from apps.kommo.provenance import MirrorSource, Provenance
from apps.kommo.services.sync import events_reconcile
from apps.kommo.webhooks.dispatch import Touch, plan_items
from apps.kommo.webhooks.parser import WebhookParseError, parse
from apps.stakeholders.models import Stakeholder, StakeholderEvent
from apps.stakeholders.services import stakeholders_touch
from tests.stakeholders.conftest import BASE_URL, event, mirror_recorded_deal

pytestmark = pytest.mark.django_db

WEBHOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "kommo" / "webhooks"
MAIL_IN = WEBHOOKS / "dp-leads-mail_in.constructed.form.txt"  # lead 501, API.md §12.3's shape
FORM = "application/x-www-form-urlencoded"


def main_stakeholder(lead_kommo_id: int = 5001) -> Stakeholder:
    link = LeadContact.objects.get(lead__kommo_id=lead_kommo_id, is_main=True)
    return Stakeholder.objects.get(lead=link.lead, contact=link.contact)


# -- what a body reports ----------------------------------------------------------------------------------


def test_a_mail_in_hook_is_a_touch_of_the_deal_dated_when_its_delivery_arrived():
    received = dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.UTC)

    plan, handled, unknown = plan_items(parse(MAIL_IN.read_bytes()).items, received_at=received)
    undated, still_handled, _ = plan_items(parse(MAIL_IN.read_bytes()).items)

    assert (handled, unknown) == (True, [])
    assert plan.touches == [Touch(entity="lead", kommo_id=501, at=received)]
    assert (plan.leads, plan.moves) == (set(), [])  # nothing to re-fetch, no move
    assert still_handled and undated.touches == []  # a hook nobody can date touches nobody


def test_a_mail_note_on_a_contact_is_a_touch_at_the_note():
    body = (WEBHOOKS / "contacts-note.sandbox.form.txt").read_bytes()
    mail = body.replace(b"%5Bnote_type%5D=4", b"%5Bnote_type%5D=amomail_message")
    assert mail != body

    plan, handled, _ = plan_items(parse(mail).items)

    assert handled
    assert plan.touches == [
        Touch(entity="contact", kommo_id=7201, at=dt.datetime.fromtimestamp(1732000700, tz=dt.UTC))
    ]


# -- through webhook processing ---------------------------------------------------------------------------


def test_a_late_batch_dates_the_mail_in_touch_at_the_delivery_and_calls_kommo_for_nothing(mapped_account):
    mirror_recorded_deal(mapped_account)
    person = main_stakeholder()
    received = (timezone.now() - dt.timedelta(hours=2)).replace(microsecond=0)
    assert person.last_touch is None or person.last_touch < received
    body = MAIL_IN.read_bytes().replace(b"%5Bid%5D=501", b"%5Bid%5D=5001")
    event = WebhookEvent.objects.create(
        account=mapped_account,
        body=body,
        content_type=FORM,
        kind=WebhookEvent.Kind.DIGITAL_PIPELINE,
        events="leads[mail_in]",
        received_at=received,
    )

    with responses.RequestsMock():  # no call to Kommo at all
        flow_tasks.webhook_process(event.pk)

    event.refresh_from_db()
    person.refresh_from_db()
    assert (event.status, event.error) == (WebhookEvent.Status.PROCESSED, "")
    assert person.last_touch == received  # when the e-mail was reported, not when the batch ran
    (row,) = StakeholderEvent.objects.filter(stakeholder_id=person.pk, field="last_touch", source="webhook")
    assert (row.new, row.at) == (received.isoformat(), received)


# -- through the events sweep -----------------------------------------------------------------------------


def mail_note(note_id: int, entity: str, entity_id: int, created_at: int) -> dict:
    """A notes-list item of an e-mail (``amomail_message``), in the shape the official PHP library reads and
    the sandbox answers (API.md §11 outlines notes only; no recorded sample exists)."""
    return {
        "id": note_id,
        "entity_id": entity_id,
        "created_by": 0,
        "updated_by": 0,
        "created_at": created_at,
        "updated_at": created_at + 5,
        "responsible_user_id": 10500001,
        "group_id": 0,
        "note_type": "amomail_message",
        "params": {
            "income": True,
            "from": {"email": "ann@client.example", "name": "Ann Lee"},
            "to": {"email": "sales@acme.example", "name": "Sales"},
            "subject": "Re: contract",
            "content_summary": "Looks good",
            "thread_id": note_id,
            "message_id": f"<{note_id}@mail>",
            "attach_cnt": 0,
        },
        "account_id": 31000001,
        "_links": {"self": {"href": f"{BASE_URL}/api/v4/{entity}/{entity_id}/notes/{note_id}"}},
    }


def test_the_events_sweep_reads_the_mail_notes_and_touches_the_people_once(
    mapped_account, kommo_client, kommo
):
    mirror_recorded_deal(mapped_account)
    chen = Stakeholder.objects.get(name="Chen Wu")
    main = main_stakeholder()
    on_deal = int((timezone.now() - dt.timedelta(hours=3)).timestamp())
    on_contact = int((timezone.now() - dt.timedelta(hours=1)).timestamp())
    kommo.notes["leads"] = [mail_note(60000001, "leads", 5001, on_deal)]
    kommo.notes["contacts"] = [mail_note(60000002, "contacts", chen.contact.kommo_id, on_contact)]

    events_reconcile(
        account=mapped_account, client=kommo_client, follow=mirror_follow, touches_follow=touches_follow
    )
    rows = StakeholderEvent.objects.filter(field="last_touch", source="sync").count()
    events_reconcile(
        account=mapped_account, client=kommo_client, follow=mirror_follow, touches_follow=touches_follow
    )  # the same notes again
    asked = kommo.calls_to("/notes", "GET")

    chen.refresh_from_db()
    main.refresh_from_db()
    at_deal, at_contact = (dt.datetime.fromtimestamp(ts, tz=dt.UTC) for ts in (on_deal, on_contact))
    assert main.last_touch == at_deal
    assert chen.last_touch == at_contact
    assert {(row.stakeholder_id, row.at) for row in StakeholderEvent.objects.filter(source="sync")} >= {
        (main.pk, at_deal),
        (chen.pk, at_contact),
    }
    assert StakeholderEvent.objects.filter(field="last_touch", source="sync").count() == rows  # nothing twice
    assert asked[0]["filter[note_type]"] == ["amomail_message"]
    assert "filter[updated_at][from]" in asked[0]
    cursor = SyncState.objects.get(account=mapped_account, resource="mail").cursor
    assert cursor == {"updated_at": on_contact + 5}
    # the second run starts a little before the latest note read, not from the lookback again
    assert int(asked[-1]["filter[updated_at][from]"][0]) > on_deal


def test_a_mail_note_read_that_fails_halfway_keeps_the_events_and_leaves_the_mail_cursor_for_the_next_sweep(
    mapped_account, kommo_client, kommo
):
    """The sweep reads the events, then the mail notes of deals, then those of contacts. Kommo answers the
    contacts' 500 (every retry): the sweep fails, the touch its events brought stays recorded and the mail
    cursor does not move. The next sweep reads from where the cursor was, so the contact's e-mail, older
    than the deal's by more than the overlap, is not skipped."""
    mirror_recorded_deal(mapped_account)
    chen = Stakeholder.objects.get(name="Chen Wu")
    main = main_stakeholder()
    now = int(timezone.now().timestamp())
    called, mailed_chen, mailed_deal = now - 4 * 3600, now - 3 * 3600, now - 3600
    call = event("01called", "outgoing_call", "contact", chen.contact.kommo_id, called, [{"note": {"id": 1}}])
    kommo.events = [call]
    kommo.notes["leads"] = [mail_note(60000001, "leads", 5001, mailed_deal)]
    kommo.notes["contacts"] = [mail_note(60000002, "contacts", chen.contact.kommo_id, mailed_chen)]
    kommo.failures["/api/v4/contacts/notes"] = (500, {"status": 500})  # every retry

    def sweep() -> None:
        events_reconcile(
            account=mapped_account, client=kommo_client, follow=mirror_follow, touches_follow=touches_follow
        )

    with pytest.raises(KommoServerError):
        sweep()

    chen.refresh_from_db()
    assert chen.last_touch == dt.datetime.fromtimestamp(called, tz=dt.UTC)  # the events' touch stays
    events_state = SyncState.objects.get(account=mapped_account, resource="events")
    assert events_state.cursor["created_at"] == called and events_state.finished_at is not None
    assert "updated_at" not in SyncState.objects.get(account=mapped_account, resource="mail").cursor

    del kommo.failures["/api/v4/contacts/notes"]
    sweep()

    chen.refresh_from_db()
    main.refresh_from_db()
    assert chen.last_touch == dt.datetime.fromtimestamp(mailed_chen, tz=dt.UTC)
    assert main.last_touch == dt.datetime.fromtimestamp(mailed_deal, tz=dt.UTC)
    mail = SyncState.objects.get(account=mapped_account, resource="mail").cursor
    assert mail == {"updated_at": mailed_deal + 5}


# -- hostile input ----------------------------------------------------------------------------------------

mail_bodies = st.builds(
    "leads%5Bmail_in%5D%5B{}%5D%5Bid%5D={}&leads%5Bnote%5D%5B0%5D%5Bnote%5D%5Bnote_type%5D={}"
    "&leads%5Bnote%5D%5B0%5D%5Bnote%5D%5Belement_id%5D={}&leads%5Bnote%5D%5B0%5D%5Bnote%5D%5Bcreated_at%5D={}"
    "&account%5Bid%5D=31000001".format,
    st.sampled_from(["0", "1", "x", ""]),
    st.one_of(st.integers(-(2**70), 2**70).map(str), st.text(max_size=8)),
    st.sampled_from(["amomail_message", "4", "", "AMOMAIL_MESSAGE", "amomail_message "]),
    st.one_of(st.integers(-(2**70), 2**70).map(str), st.text(max_size=8)),
    st.one_of(st.integers(-(2**70), 2**70).map(str), st.text(max_size=8)),
)


@settings(max_examples=300, deadline=None)
@given(body=mail_bodies, received=st.datetimes(timezones=st.just(dt.UTC)))
def test_any_mail_body_is_refused_with_a_parse_error_or_planned_into_dated_touches(body, received):
    try:
        plan, _, _ = plan_items(parse(body.encode("utf-8", "surrogatepass")).items, received_at=received)
    except WebhookParseError:
        return
    for touch in plan.touches:
        assert touch.entity in ("lead", "contact")
        assert isinstance(touch.kommo_id, int) and abs(touch.kommo_id) < 2**63
        assert touch.at.tzinfo is not None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    moments=st.lists(
        st.datetimes(
            min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2200, 1, 1), timezones=st.just(dt.UTC)
        ),
        min_size=1,
        max_size=4,
    )
)
def test_touches_at_any_moment_never_move_a_last_touch_back_or_past_now(mapped_account, moments):
    if not Stakeholder.objects.exists():
        mirror_recorded_deal(mapped_account)
    chen = Stakeholder.objects.get(name="Chen Wu")
    for moment in moments:
        before = Stakeholder.objects.get(pk=chen.pk).last_touch
        stakeholders_touch(
            account=mapped_account,
            touches=[Touch("contact", chen.contact.kommo_id, moment)],
            provenance=Provenance(MirrorSource.WEBHOOK),
        )
        after = Stakeholder.objects.get(pk=chen.pk).last_touch
        assert after is not None and after <= timezone.now()
        assert before is None or after >= before
