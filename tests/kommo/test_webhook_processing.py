"""Processing stored webhook events into the mirror, with Kommo's API answered by the suite's fake Kommo
(``responses`` at the HTTP boundary)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from apps.flows import tasks as flow_tasks
from apps.flows.sync import mirror_follow
from apps.kommo import tasks
from apps.kommo.models import CatalogElement, Company, Contact, KommoAccount, Lead, StageChange, WebhookEvent
from apps.kommo.services.mirror import stage_change_record
from apps.kommo.webhooks import intake, processing
from apps.kommo.webhooks.dispatch import HANDLERS, IGNORED
from apps.kommo.webhooks.parser import encode_form, parse
from tests.kommo.webhook_support import account_for, body_names, recording
from tests.support.fake_kommo import FakeKommo

pytestmark = pytest.mark.django_db
Status = WebhookEvent.Status


@pytest.fixture
def web() -> Client:
    return Client()


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float | None]]:
    sent: list[tuple[int, float | None]] = []

    def record(*, event_id: int, countdown: float | None = None) -> None:
        sent.append((event_id, countdown))

    monkeypatch.setattr(intake, "webhook_event_enqueue", record)
    monkeypatch.setattr(processing, "webhook_event_enqueue", record)
    monkeypatch.setattr(flow_tasks, "webhook_event_enqueue", record)
    return sent


@pytest.fixture
def hooked() -> KommoAccount:
    return account_for(recording("leads-status.form.txt"))


@pytest.fixture
def kommo(hooked: KommoAccount) -> Iterator[FakeKommo]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeKommo(mock, hooked.api_root)


def deliver(web: Client, account: KommoAccount, body: bytes) -> WebhookEvent:
    response = web.generic(
        "POST",
        f"/webhooks/kommo/{account.webhook_token}/",
        body,
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    return WebhookEvent.objects.latest("id")


def run(event: WebhookEvent) -> WebhookEvent:
    flow_tasks.webhook_process(event.pk)
    event.refresh_from_db()
    return event


def test_a_stage_change_updates_the_deal_and_records_the_move_at_last_modified(
    web, hooked, kommo, enqueued
) -> None:
    kommo.lead(30267969, status_id=16525558, pipeline_id=788512)

    event = run(deliver(web, hooked, recording("leads-status.form.txt").body))

    assert (event.status, event.attempts, event.error) == (Status.PROCESSED, 1, "")
    assert event.processed_at is not None
    [query] = kommo.calls_to("/api/v4/leads")
    assert query["filter[id][]"] == ["30267969"]
    assert query["with"] == ["contacts,catalog_elements"]
    lead = Lead.objects.get(account=hooked, kommo_id=30267969)
    assert lead.status_kommo_id == 16525558
    [move] = StageChange.objects.filter(lead=lead)
    assert (move.from_status_kommo_id, move.to_status_kommo_id) == (16525555, 16525558)
    assert move.at == dt.datetime(2021, 3, 17, 12, 57, 26, tzinfo=dt.UTC)
    assert (move.source, move.moved_by_kommo_user_id) == (StageChange.Source.WEBHOOK, 1760815)


def test_a_duplicate_delivery_has_no_further_effect(web, hooked, kommo, enqueued) -> None:
    kommo.lead(30267969, status_id=16525558, pipeline_id=788512)
    body = recording("leads-status.form.txt").body

    first = run(deliver(web, hooked, body))
    second = run(deliver(web, hooked, body))
    again = run(first)  # a redelivered task for a finished event claims nothing

    assert [first.status, second.status, again.status] == [Status.PROCESSED] * 3
    assert again.attempts == 1
    assert StageChange.objects.count() == 1
    assert Lead.objects.count() == 1


def moved_61_to_62(lead_id: int) -> bytes:
    """One delivery of deal ``lead_id`` moved from 61 to 62 in pipeline 7001."""
    item = {
        "id": str(lead_id),
        "status_id": "62",
        "old_status_id": "61",
        "pipeline_id": "7001",
        "last_modified": "1732000000",
        "modified_user_id": "12",
    }
    return encode_form(
        {"leads": {"status": [item]}, "account": {"subdomain": "irestoremoldova", "id": "16503244"}}
    )


def test_waiting_events_are_processed_together_and_leads_fetched_250_at_a_time(
    web, hooked, kommo, enqueued, settings
) -> None:
    settings.KOMMO_WEBHOOK_BATCH_SIZE = 500
    events = []
    for lead_id in range(1, 301):
        kommo.lead(lead_id, status_id=62, pipeline_id=7001)
        events.append(deliver(web, hooked, moved_61_to_62(lead_id)))

    run(events[0])

    assert [len(query["filter[id][]"]) for query in kommo.calls_to("/api/v4/leads")] == [250, 50]
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {Status.PROCESSED}
    assert StageChange.objects.filter(to_status_kommo_id=62).count() == 300
    assert all(run(event).attempts == 1 for event in events[1:])  # their own tasks find nothing to do


def test_a_batch_of_moves_costs_one_query_more_per_move(
    web, hooked, kommo, enqueued, settings, django_assert_max_num_queries
) -> None:
    """The moves a batch reports are recorded together (the deals locked at once, their recent moves, the
    stages and the movers read once, the stays derived once) and its events are marked processed in one
    UPDATE: a further move in the batch costs its INSERT, not a lock and lookups of its own."""
    settings.KOMMO_WEBHOOK_BATCH_SIZE = 500

    def batch(first: int, count: int) -> int:
        events = []
        for lead_id in range(first, first + count):
            kommo.lead(lead_id, status_id=62, pipeline_id=7001)
            events.append(deliver(web, hooked, moved_61_to_62(lead_id)))
        with django_assert_max_num_queries(1000) as counted:
            run(events[0])
        assert {event.status for event in map(run, events[1:])} <= {Status.PROCESSED}
        return len(counted.captured_queries)

    few = batch(1, 2)
    many = batch(101, 12)

    assert many <= few + 10 + 2  # an INSERT per further move, and a little slack
    assert StageChange.objects.filter(to_status_kommo_id=62, source=StageChange.Source.WEBHOOK).count() == 14
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {Status.PROCESSED}


def test_a_run_of_several_batches_builds_one_client_and_waits_for_a_slot_before_each_claim(
    web, hooked, kommo, enqueued, settings, monkeypatch
) -> None:
    settings.KOMMO_WEBHOOK_BATCH_SIZE = 2
    built: list[processing.KommoClient] = []
    waits: list[int] = []

    class Client(processing.KommoClient):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

        def wait_for_free_slot(self) -> float:
            waits.append(len(kommo.calls))
            return 0.0

    monkeypatch.setattr(processing, "KommoClient", Client)
    account = {"subdomain": "irestoremoldova", "id": "16503244"}
    events = []
    for lead_id in (1, 2, 3):
        kommo.lead(lead_id, status_id=62, pipeline_id=7001)
        item = {"id": str(lead_id), "status_id": "62", "old_status_id": "61", "pipeline_id": "7001"}
        events.append(deliver(web, hooked, encode_form({"leads": {"status": [item]}, "account": account})))

    run(events[0])

    assert len(built) == 1
    assert waits == [0, 1]  # before the first claim, and again after the first batch's re-fetch
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {Status.PROCESSED}


def _status_item(lead_id: int, old: int, new: int, at: int) -> dict[str, str]:
    return {
        "id": str(lead_id),
        "status_id": str(new),
        "old_status_id": str(old),
        "pipeline_id": "7001",
        "last_modified": str(at),
        "modified_user_id": "12",
    }


def _moves_of(lead_id: int) -> list[tuple[int | None, int, str]]:
    rows = StageChange.objects.filter(lead__kommo_id=lead_id).order_by("at", "pk")
    return list(rows.values_list("from_status_kommo_id", "to_status_kommo_id", "source"))


def test_two_moves_of_one_deal_in_one_batch_are_two_moves_not_three(web, hooked, kommo, enqueued) -> None:
    account = {"subdomain": "irestoremoldova", "id": "16503244"}
    kommo.lead(5, status_id=61, pipeline_id=7001, updated_at=1_732_000_000)
    run(deliver(web, hooked, encode_form({"leads": {"update": [{"id": "5"}]}, "account": account})))
    kommo.lead(5, status_id=63, pipeline_id=7001, updated_at=1_732_000_020)
    first = deliver(
        web,
        hooked,
        encode_form({"leads": {"status": [_status_item(5, 61, 62, 1_732_000_010)]}, "account": account}),
    )
    deliver(
        web,
        hooked,
        encode_form({"leads": {"status": [_status_item(5, 62, 63, 1_732_000_020)]}, "account": account}),
    )

    run(first)

    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {Status.PROCESSED}
    assert _moves_of(5) == [(61, 62, "webhook"), (62, 63, "webhook")]  # no inferred 61 → 63


def test_a_move_made_again_in_the_second_of_the_move_back_is_a_new_move(web, hooked, kommo, enqueued) -> None:
    # The manager moves 61 → 62, the portal moves the deal back, the manager moves it again: all within
    # one second, which is all Kommo's times tell.
    account = {"subdomain": "irestoremoldova", "id": "16503244"}
    second = 1_732_000_000
    kommo.lead(5, status_id=62, pipeline_id=7001, updated_at=second)
    run(
        deliver(
            web,
            hooked,
            encode_form({"leads": {"status": [_status_item(5, 61, 62, second)]}, "account": account}),
        )
    )
    deal = Lead.objects.get(account=hooked, kommo_id=5)
    stage_change_record(
        account=hooked,
        lead=deal,
        from_status_id=62,
        to_status_id=61,
        at=dt.datetime.fromtimestamp(second, tz=dt.UTC),
        source=StageChange.Source.GATE,
        follow=mirror_follow,
    )
    kommo.lead(5, status_id=62, pipeline_id=7001, updated_at=second)
    echo = encode_form({"leads": {"status": [_status_item(5, 62, 61, second)]}, "account": account})
    again = encode_form({"leads": {"status": [_status_item(5, 61, 62, second)]}, "account": account})

    batch = deliver(web, hooked, echo)  # the gate's move back, echoed, in one batch with the manager's
    deliver(web, hooked, again)
    run(batch)
    redelivered = run(deliver(web, hooked, again))  # Kommo sends the same delivery again: nothing new

    assert redelivered.status == Status.PROCESSED
    assert _moves_of(5) == [(61, 62, "webhook"), (62, 61, "gate"), (61, 62, "webhook")]


def test_a_digital_pipeline_move_is_dated_by_the_deal_when_still_there_else_by_its_own_delivery(
    web, enqueued
) -> None:
    rec = recording("dp-leads-status.form.txt")
    account = account_for(rec)
    moved_on = rec.body.replace(b"10754147", b"10754148")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake = FakeKommo(mock, account.api_root)
        fake.lead(10754147, status_id=54423922, pipeline_id=6344290, updated_at=1_732_000_000)
        fake.lead(10754148, status_id=99, pipeline_id=6344290, updated_at=1_732_000_500)  # moved on since
        first, second = deliver(web, account, rec.body), deliver(web, account, moved_on)
        received = {
            first.pk: dt.datetime(2024, 11, 19, 7, 0, tzinfo=dt.UTC),
            second.pk: dt.datetime(2024, 11, 19, 8, 0, tzinfo=dt.UTC),
        }
        for pk, at in received.items():
            WebhookEvent.objects.filter(pk=pk).update(received_at=at)

        assert run(first).status == Status.PROCESSED
    assert WebhookEvent.objects.get(pk=second.pk).status == Status.PROCESSED  # same batch

    still, gone = (
        StageChange.objects.get(lead__kommo_id=lead_id, to_status_kommo_id=54423922)
        for lead_id in (10754147, 10754148)
    )
    assert (still.at, still.at_is_exact) == (dt.datetime.fromtimestamp(1_732_000_000, tz=dt.UTC), False)
    assert (gone.at, gone.at_is_exact) == (received[second.pk], False)


def test_a_deleted_deal_is_marked_deleted_unless_kommo_still_lists_it(web, kommo, enqueued) -> None:
    rec = recording("leads-delete.doc.form.txt")
    account = account_for(rec)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake = FakeKommo(mock, account.api_root)
        fake.lead(12345678, status_id=67548607, pipeline_id=8572511)
        run(
            deliver(
                web, account, recording("leads-restore.doc.form.txt").body.replace(b"15317715", b"12345678")
            )
        )
        assert not Lead.objects.get(kommo_id=12345678).is_deleted

        run(deliver(web, account, rec.body))  # still listed: restored since, stays live
        assert not Lead.objects.get(kommo_id=12345678).is_deleted

        del fake.leads[12345678]
        event = run(deliver(web, account, rec.body))

    assert event.status == Status.PROCESSED
    assert Lead.objects.get(kommo_id=12345678).is_deleted


def test_contacts_companies_and_catalog_elements_are_refetched_and_mirrored(web, enqueued) -> None:
    rec = recording("contacts-add-contact.doc.form.txt")
    account = account_for(rec)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake = FakeKommo(mock, account.api_root)
        fake.contacts[17611273] = {
            "id": 17611273,
            "name": "Contact Name",
            "updated_at": 1726573127,
        }
        fake.companies[17612521] = {
            "id": 17612521,
            "name": "Company name",
            "updated_at": 1726576534,
        }
        fake.elements[32908] = {
            347577: {"id": 347577, "name": "Item 1", "catalog_id": 32908, "updated_at": 1}
        }
        for name in (
            "contacts-add-contact.doc.form.txt",
            "contacts-add-company.doc.form.txt",
            "catalogs-add-element.doc.form.txt",
        ):
            event = run(deliver(web, account, recording(name).body))
            assert event.status == Status.PROCESSED, event.error

        assert fake.calls_to("/api/v4/catalogs/32908/elements")[0]["filter[id][]"] == ["347577"]
    assert Contact.objects.get(kommo_id=17611273).name == "Contact Name"
    assert Company.objects.get(kommo_id=17612521).name == "Company name"
    assert CatalogElement.objects.get(kommo_id=347577).name == "Item 1"


def test_a_task_added_or_completed_on_a_deal_refetches_the_deal_for_its_open_task_deadline(
    web, enqueued
) -> None:
    rec = recording("task-add.doc.form.txt")
    account = account_for(rec)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake = FakeKommo(mock, account.api_root)
        fake.lead(15320411, status_id=4004, pipeline_id=3001)
        fake.leads[15320411]["closest_task_at"] = 1759438740
        event = run(deliver(web, account, rec.body))
        assert event.status == Status.PROCESSED, event.error
        assert Lead.objects.get(kommo_id=15320411).raw["closest_task_at"] == 1759438740

        fake.leads[15320411]["closest_task_at"] = None  # the task was completed
        event = run(deliver(web, account, recording("task-update-complete.doc.form.txt").body))
        assert event.status == Status.PROCESSED, event.error

    assert [query["filter[id][]"] for query in fake.calls_to("/api/v4/leads")] == [["15320411"]] * 2
    assert Lead.objects.get(kommo_id=15320411).raw["closest_task_at"] is None


def test_a_task_on_a_contact_changes_nothing_the_portal_mirrors(web, enqueued) -> None:
    rec = recording("task-add.doc.form.txt")
    account = account_for(rec)
    body = rec.body.replace(b"element_type%5D=2", b"element_type%5D=1")
    assert body != rec.body
    with responses.RequestsMock():
        event = run(deliver(web, account, body))
    assert event.status == Status.PROCESSED, event.error
    assert not Lead.objects.exists()


def test_events_the_portal_does_not_mirror_are_ignored_without_calling_kommo(web, enqueued) -> None:
    for name in ("task-delete.doc.form.txt", "message-add.doc.form.txt"):
        rec = recording(name)
        account = KommoAccount.objects.filter(kommo_id=32720107).first() or account_for(rec)
        with responses.RequestsMock():
            event = run(deliver(web, account, rec.body))
        assert (event.status, event.error) == (Status.IGNORED, "")


def test_a_note_is_a_touch_of_the_people_and_calls_kommo_for_nothing(web, enqueued) -> None:
    rec = recording("leads-note-text.doc.form.txt")
    account = KommoAccount.objects.filter(kommo_id=32720107).first() or account_for(rec)
    with responses.RequestsMock():
        event = run(deliver(web, account, rec.body))
    assert (event.status, event.error) == (Status.PROCESSED, "")


def test_an_unknown_event_type_is_ignored_and_named(web, hooked, enqueued) -> None:
    body = b"customers[add][0][id]=5&account[id]=16503244"
    with responses.RequestsMock():
        event = run(deliver(web, hooked, body))

    assert event.status == Status.IGNORED
    assert event.error == "not handled: customer[add]"


def test_a_body_that_cannot_be_parsed_is_failed_with_the_reason(web, hooked, enqueued) -> None:
    event = run(deliver(web, hooked, b"leads[status][0][id]=%FF&account[id]=16503244"))

    assert event.status == Status.FAILED
    assert "UTF-8" in event.error
    assert "WebhookParseError" in event.traceback


def test_a_transient_kommo_error_is_retried_with_backoff_until_it_succeeds(
    web, hooked, kommo, enqueued, settings
) -> None:
    settings.KOMMO_WEBHOOK_RETRY_BASE_SECONDS = 30
    kommo.lead(30267969, status_id=16525558, pipeline_id=788512)
    kommo.failure = (429, {"title": "Too Many Requests", "status": 429, "retry_after": 300})
    event = deliver(web, hooked, recording("leads-status.form.txt").body)

    event = run(event)
    assert (event.status, event.attempts) == (Status.FAILED, 1)
    assert event.retry_at is not None and "retrying in 30 s" in event.error
    assert enqueued[-1] == (event.pk, 30.0)

    run(event)  # too early: not due yet
    assert WebhookEvent.objects.get(pk=event.pk).attempts == 1

    WebhookEvent.objects.filter(pk=event.pk).update(retry_at=timezone.now())
    event = run(event)
    assert (event.status, event.attempts) == (Status.FAILED, 2)
    assert enqueued[-1] == (event.pk, 60.0)

    kommo.failure = None
    WebhookEvent.objects.filter(pk=event.pk).update(retry_at=timezone.now())
    event = run(event)
    assert (event.status, event.attempts, event.retry_at) == (Status.PROCESSED, 3, None)
    assert StageChange.objects.count() == 1


def test_an_event_out_of_attempts_is_dead(web, hooked, kommo, enqueued, settings) -> None:
    settings.KOMMO_WEBHOOK_MAX_ATTEMPTS = 2
    kommo.failure = (429, {"title": "Too Many Requests", "status": 429, "retry_after": 300})
    event = run(deliver(web, hooked, recording("leads-status.form.txt").body))
    WebhookEvent.objects.filter(pk=event.pk).update(retry_at=timezone.now())

    event = run(event)

    assert (event.status, event.attempts) == (Status.DEAD, 2)
    assert "gave up after 2 attempts" in event.error


def test_a_permanent_kommo_error_fails_the_event_with_its_traceback(web, hooked, kommo, enqueued) -> None:
    kommo.failure = (402, {"title": "Payment Required", "status": 402, "detail": "Payment required"})
    before = len(enqueued)

    event = run(deliver(web, hooked, recording("leads-status.form.txt").body))

    assert (event.status, event.retry_at) == (Status.FAILED, None)
    assert "Payment required" in event.error
    assert "KommoPaymentRequired" in event.traceback
    assert len(enqueued) == before  # no retry scheduled


def test_the_sweeper_requeues_events_stuck_in_received_processing_or_a_lost_retry(hooked, enqueued) -> None:
    long_ago = timezone.now() - dt.timedelta(hours=1)
    stuck = [
        WebhookEvent.objects.create(account=hooked, body=b"x", status=Status.RECEIVED, received_at=long_ago),
        WebhookEvent.objects.create(
            account=hooked, body=b"x", status=Status.PROCESSING, received_at=long_ago, claimed_at=long_ago
        ),
        WebhookEvent.objects.create(
            account=hooked, body=b"x", status=Status.FAILED, received_at=long_ago, retry_at=long_ago
        ),
    ]
    WebhookEvent.objects.create(account=hooked, body=b"x", status=Status.RECEIVED)  # just arrived
    WebhookEvent.objects.create(
        account=hooked, body=b"x", status=Status.FAILED, received_at=long_ago
    )  # final

    assert tasks.webhook_sweep() == 3

    assert sorted(event_id for event_id, _ in enqueued) == sorted(event.pk for event in stuck)
    assert WebhookEvent.objects.get(pk=stuck[1].pk).status == Status.RECEIVED


def test_a_claim_abandoned_by_a_dead_worker_is_taken_over(web, hooked, kommo, enqueued) -> None:
    kommo.lead(30267969, status_id=16525558, pipeline_id=788512)
    event = deliver(web, hooked, recording("leads-status.form.txt").body)
    WebhookEvent.objects.filter(pk=event.pk).update(
        status=Status.PROCESSING, attempts=1, claimed_at=timezone.now() - dt.timedelta(hours=1)
    )

    event = run(event)

    assert (event.status, event.attempts) == (Status.PROCESSED, 2)


def test_prune_removes_old_processed_and_ignored_events_and_keeps_the_rest(hooked) -> None:
    old = timezone.now() - dt.timedelta(days=40)
    for status in Status.values:
        WebhookEvent.objects.create(account=hooked, body=b"x", status=status, received_at=old)
        WebhookEvent.objects.create(account=hooked, body=b"x", status=status)

    call_command("kommo_webhooks_prune", "--days", "30")

    kept_old = set(WebhookEvent.objects.filter(received_at=old).values_list("status", flat=True))
    assert kept_old == set(Status.values) - {Status.PROCESSED, Status.IGNORED}
    assert WebhookEvent.objects.exclude(received_at=old).count() == len(Status.values)


# -- every recorded body, through the real URL ----------------------------------------------------------


@pytest.mark.parametrize("name", body_names())
def test_every_recorded_delivery_is_stored_as_sent_and_processed_or_ignored(web, enqueued, name: str) -> None:
    rec = recording(name)
    account = account_for(rec)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        FakeKommo(mock, account.api_root)  # Kommo lists nothing: every entity named is gone
        response = web.generic(
            "POST",
            f"/webhooks/kommo/{account.webhook_token}/",
            rec.body,
            content_type=rec.content_type,
            headers={key: value for key, value in rec.headers.items() if key != "content-type"},
        )
        assert response.status_code == 200
        event = run(WebhookEvent.objects.get())

    assert bytes(event.body) == rec.body
    assert event.request_id == rec.headers["x-amocrm-requestid"]
    assert event.status in (Status.PROCESSED, Status.IGNORED), event.error
    assert event.error == ""


def test_every_event_type_in_the_dispatch_table_has_a_recorded_body() -> None:
    recorded = {item.event for name in body_names() for item in parse(recording(name).body).items}

    missing = (set(HANDLERS) | IGNORED) - recorded
    assert not missing, f"no fixture in tests/fixtures/kommo/webhooks/ for {sorted(missing)}"
    assert not set(HANDLERS) & IGNORED
