"""Draining the outbound change queue: batching, check before retrying, retries, the circuit breaker."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import requests
import responses
import time_machine
from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from apps.kommo.client import KommoClient, RetryPolicy
from apps.kommo.models import KommoAccount, Lead, OutboundChange, StageChange, StageStay, WebhookEvent
from apps.kommo.ratelimit import FileSlotStore, RateLimiter
from apps.kommo.services.accounts import account_unblock
from apps.kommo.services.outbound import (
    BACKLOG_EVENTS,
    BACKLOG_RECHECK,
    BURST_BACKLOG,
    BURST_HOLD_MAX,
    BURST_MOVES,
    CALM_MOVES,
    CALM_WINDOW,
    FOLLOW_UP_MAX,
    LEADS_BATCH,
    MOVE_HOLD_MAX,
    MOVE_WAIT_MAX,
    Intended,
    outbound_change_enqueue,
    outbound_change_retry,
    outbound_changes_drain,
    outbound_changes_enqueue,
    outbound_changes_flush,
    outbound_drain_plan,
    outbound_flush_reserve,
    outbound_move_echoes_claim,
)
from apps.kommo.tasks import outbound_flush, outbound_flush_schedule
from apps.kommo.webhooks.processing import webhook_backlog, webhook_moves_backlog
from tests.factories import KommoAccountFactory, PipelineFactory, StatusFactory
from tests.support.fake_kommo import FakeKommo
from tests.support.services import RedisServer

BASE = "https://acme.kommo.com"
LEGAL, SIGNING, PIPELINE = 4004, 4005, 3001
Kind, State = OutboundChange.Kind, OutboundChange.Status
MARKER = "[portal gate 7 · move {n}]"


@pytest.fixture
def account(db: None) -> KommoAccount:
    account = KommoAccountFactory(
        name="Acme",
        base_url=BASE,
        connected=True,
    )
    pipeline = PipelineFactory(account=account, kommo_id=PIPELINE, name="B2B sales")
    for kommo_id, name, sort in ((LEGAL, "Legal review", 50), (SIGNING, "Signing", 60)):
        StatusFactory(account=account, pipeline=pipeline, kommo_id=kommo_id, name=name, sort=sort)
    return account


@pytest.fixture
def client(account: KommoAccount, tmp_path: Path) -> KommoClient:
    limiter = RateLimiter(FileSlotStore(tmp_path / "ratelimit"))
    return KommoClient(account, limiter=limiter, sleep=lambda _: None, retry=RetryPolicy(max_attempts=1))


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def kommo(account: KommoAccount) -> Iterator[FakeKommo]:
    """The suite's fake Kommo, for the tests about what the drain finds in Kommo's data (a write Kommo did
    whose answer was lost); a call it has no answer for fails the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake = FakeKommo(mock, account.api_root)
        yield fake
        assert not fake.unrouted, f"calls the fake Kommo has no answer for: {fake.unrouted}"


def lead_row(account: KommoAccount, kommo_id: int) -> Lead:
    return Lead.objects.create(
        account=account,
        kommo_id=kommo_id,
        name=f"Deal {kommo_id}",
        pipeline_kommo_id=PIPELINE,
        status_kommo_id=SIGNING,
    )


def blocked(account: KommoAccount, lead_id: int, n: int, rule: int = 7) -> None:
    """What a blocked move queues: the move back, a task and a note."""
    marker = MARKER.format(n=n).replace("gate 7", f"gate {rule}")
    outbound_change_enqueue(
        account=account,
        kind=Kind.LEAD_STATUS,
        entity_kommo_id=lead_id,
        payload={
            "status_id": LEGAL,
            "pipeline_id": PIPELINE,
            "expected_status_id": SIGNING,
            "expected_pipeline_id": PIPELINE,
        },
        idempotency_key=f"gate:move:{n}",
    )
    outbound_change_enqueue(
        account=account,
        kind=Kind.TASK_CREATE,
        entity_kommo_id=lead_id,
        payload={
            "text": f"The lawyer has not approved\n{marker}",
            "complete_till": 1746100800,
            "responsible_user_id": 501,
            "task_type_id": 1,
            "marker": marker,
            "dedupe_marker": f"[portal gate {rule} ",
        },
        idempotency_key=f"gate:{rule}:{n}:task",
        dedupe_key=f"gate-task:{rule}:{lead_id}",
    )
    outbound_change_enqueue(
        account=account,
        kind=Kind.NOTE_CREATE,
        entity_kommo_id=lead_id,
        payload={"text": f"Moved back: the lawyer has not approved\n{marker}", "marker": marker},
        idempotency_key=f"gate:{rule}:{n}:note",
    )


def echo_write(key: str, updated: bool = False):
    """A callback answering a batch write the way Kommo does: one entry per item, request_id echoed."""

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        items = json.loads(request.body or b"[]")
        entries: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            entry: dict[str, Any] = {
                "id": item.get("id", 900000 + index),
                "request_id": item.get("request_id"),
            }
            if updated:
                entry["updated_at"] = 1746100000
            entries.append(entry)
        return 200, {"X-Request-Id": f"req-{key}"}, json.dumps({"_embedded": {key: entries}})

    return answer


def writes(api: responses.RequestsMock) -> list[tuple[str, str, int]]:
    return [
        (
            call.request.method,
            call.request.url.split("?")[0].removeprefix(BASE),
            len(json.loads(call.request.body)),
        )
        for call in api.calls
        if call.request.method in ("PATCH", "POST")
    ]


def test_a_burst_of_100_blocked_moves_costs_four_writes(account, client, api):
    for n in range(100):
        lead_row(account, 10_000 + n)
        blocked(account, 10_000 + n, n)
    api.add_callback("PATCH", BASE + "/api/v4/leads", callback=echo_write("leads", updated=True))
    api.add_callback("POST", BASE + "/api/v4/tasks", callback=echo_write("tasks"))
    api.add_callback("POST", BASE + "/api/v4/leads/notes", callback=echo_write("notes"))

    result = outbound_changes_drain(account_id=account.pk, client=client)

    assert writes(api) == [
        ("PATCH", "/api/v4/leads", 50),
        ("PATCH", "/api/v4/leads", 50),
        ("POST", "/api/v4/tasks", 100),
        ("POST", "/api/v4/leads/notes", 100),
    ]
    assert result.sent == 300 and result.retry_in is None
    assert set(OutboundChange.objects.values_list("status", flat=True)) == {State.SENT}
    move = OutboundChange.objects.filter(kind=Kind.LEAD_STATUS).first()
    assert move.kommo_request_id == "req-leads" and move.result_ids == [move.entity_kommo_id]


def test_the_drains_own_moves_are_recorded_together_not_one_deal_at_a_time(
    account, client, api, django_assert_max_num_queries
):
    """The moves back a drain sent enter the stage history as the portal's own (``gate``) in one go: the
    deals locked together, their recent moves and the stages read once, their stays derived once — a
    drain of 20 moves costs the queries of a drain of 2 and one INSERT per move more (one deal at a
    time, each move cost a lock, its lookups, the stages and the stays again: about ten queries)."""
    api.add_callback("PATCH", BASE + "/api/v4/leads", callback=echo_write("leads", updated=True))

    def drain_moves(first: int, count: int) -> int:
        for n in range(first, first + count):
            lead_row(account, 10_000 + n)
            blocked(account, 10_000 + n, n)
        with django_assert_max_num_queries(1000) as counted:
            outbound_changes_drain(account_id=account.pk, kinds=[Kind.LEAD_STATUS], client=client)
        return len(counted.captured_queries)

    few = drain_moves(0, 2)
    many = drain_moves(100, 20)

    assert many <= few + 18 + 2  # an INSERT per further move, and a little slack
    moves = StageChange.objects.filter(account=account).order_by("lead__kommo_id")
    assert moves.count() == 22
    assert {(m.source, m.from_status_kommo_id, m.to_status_kommo_id) for m in moves} == {
        ("gate", SIGNING, LEGAL)
    }
    assert not OutboundChange.objects.filter(kind=Kind.LEAD_STATUS, echoed_at=None).exists()
    stays = StageStay.objects.filter(lead__account=account, left_at=None)
    assert sorted(stays.values_list("status_kommo_id", flat=True)) == [LEGAL] * 22


def test_a_drain_stores_every_outcome_of_a_large_batch_in_a_few_queries(
    account, client, api, django_assert_max_num_queries
):
    # 60 decisions on 50 deals: 10 deals were blocked twice (by another rule the second time), so 10
    # moves are superseded; Kommo's answer to the notes leaves every third one out, so those are unknown
    # (checked before they are sent again).
    for n in range(60):
        blocked(account, 10_000 + n % 50, n, rule=7 if n < 50 else 8)
    api.add_callback("PATCH", BASE + "/api/v4/leads", callback=echo_write("leads", updated=True))
    api.add_callback("POST", BASE + "/api/v4/tasks", callback=echo_write("tasks"))

    def notes_answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        items = json.loads(request.body or b"[]")
        entries = [
            {"id": 700_000 + index, "request_id": item["request_id"]}
            for index, item in enumerate(items)
            if index % 3 != 2
        ]
        return 200, {"X-Request-Id": "req-notes"}, json.dumps({"_embedded": {"notes": entries}})

    api.add_callback("POST", BASE + "/api/v4/leads/notes", callback=notes_answer)
    before = timezone.now()

    # One UPDATE per change would be 180 queries on its own.
    with django_assert_max_num_queries(30):
        result = outbound_changes_drain(account_id=account.pk, client=client)

    assert writes(api) == [
        ("PATCH", "/api/v4/leads", 50),
        ("POST", "/api/v4/tasks", 60),
        ("POST", "/api/v4/leads/notes", 60),
    ]
    assert (result.sent, result.skipped, result.unknown, result.failed) == (150, 10, 20, 0)
    changes = list(OutboundChange.objects.order_by("id"))
    assert len(changes) == 180
    assert all(change.attempts == 1 and change.modified >= before for change in changes)
    request_ids = {
        Kind.LEAD_STATUS: "req-leads",
        Kind.TASK_CREATE: "req-tasks",
        Kind.NOTE_CREATE: "req-notes",
    }
    outcomes: dict[tuple[str, str], int] = {}
    for change in changes:
        outcomes[change.kind, change.status] = outcomes.get((change.kind, change.status), 0) + 1
        if change.status == State.SENT:
            assert change.error == "" and change.next_attempt_at is None
            assert change.sent_at is not None and change.sent_at >= before
            assert change.kommo_request_id == request_ids[change.kind]
            assert len(change.result_ids) == 1
        elif change.status == State.SKIPPED:
            assert change.next_attempt_at is None and change.sent_at is None and change.result_ids == []
            assert change.kind == Kind.LEAD_STATUS and change.error.startswith("superseded by change #")
        else:
            assert change.status == State.UNKNOWN and change.kind == Kind.NOTE_CREATE
            assert change.error.endswith("Kommo's answer did not name this item")
            assert change.next_attempt_at is not None and change.next_attempt_at > before
            assert change.sent_at is None and change.result_ids == [] and change.kommo_request_id == ""
    assert outcomes == {
        (Kind.LEAD_STATUS, State.SENT): 50,
        (Kind.LEAD_STATUS, State.SKIPPED): 10,
        (Kind.TASK_CREATE, State.SENT): 60,
        (Kind.NOTE_CREATE, State.SENT): 40,
        (Kind.NOTE_CREATE, State.UNKNOWN): 20,
    }
    superseded, newer = (OutboundChange.objects.get(idempotency_key=f"gate:move:{n}") for n in (0, 50))
    assert (superseded.status, newer.status) == (State.SKIPPED, State.SENT)
    assert superseded.error == f"superseded by change #{newer.pk} of the same deal"


def test_the_portals_move_enters_the_stage_history_as_a_gate_move(account, client, api):
    lead = lead_row(account, 10_001)
    blocked(account, 10_001, 1)
    api.add_callback("PATCH", BASE + "/api/v4/leads", callback=echo_write("leads", updated=True))
    api.add_callback("POST", BASE + "/api/v4/tasks", callback=echo_write("tasks"))
    api.add_callback("POST", BASE + "/api/v4/leads/notes", callback=echo_write("notes"))

    outbound_changes_drain(account_id=account.pk, client=client)

    change = StageChange.objects.get(lead=lead)
    assert (change.source, change.from_status_kommo_id, change.to_status_kommo_id) == ("gate", SIGNING, LEGAL)
    assert change.at == dt.datetime.fromtimestamp(1746100000, tz=dt.UTC)


def test_a_move_whose_outcome_is_unknown_is_checked_and_not_sent_twice(account, client, kommo):
    lead_row(account, 10_001)
    kommo.lead(10_001, SIGNING, PIPELINE)
    blocked(account, 10_001, 1)
    # Kommo moves the deal back to Legal review; its answer is lost on the way back.
    kommo.time_out_next("/api/v4/leads", done=True, method="PATCH")

    first = outbound_changes_drain(account_id=account.pk, client=client)

    move = OutboundChange.objects.get(kind=Kind.LEAD_STATUS)
    assert move.status == State.UNKNOWN and first.unknown == 1 and first.retry_in is not None
    assert kommo.leads[10_001]["status_id"] == LEGAL
    OutboundChange.objects.filter(pk=move.pk).update(next_attempt_at=None)
    before = len(kommo.requests)

    outbound_changes_drain(account_id=account.pk, client=client)

    move.refresh_from_db()
    assert move.status == State.SENT
    assert [request.method for request in kommo.requests[before:]] == ["GET"]


def test_a_move_whose_outcome_is_unknown_is_sent_again_when_it_did_not_land(account, client, kommo):
    lead_row(account, 10_001)
    kommo.lead(10_001, SIGNING, PIPELINE)
    blocked(account, 10_001, 1)
    OutboundChange.objects.exclude(kind=Kind.LEAD_STATUS).delete()
    kommo.time_out_next("/api/v4/leads", done=False, method="PATCH")
    outbound_changes_drain(account_id=account.pk, client=client)
    assert OutboundChange.objects.get().status == State.UNKNOWN
    OutboundChange.objects.update(next_attempt_at=None)
    before = len(kommo.requests)

    outbound_changes_drain(account_id=account.pk, client=client)

    assert [request.method for request in kommo.requests[before:]] == ["GET", "PATCH"]
    assert OutboundChange.objects.get().status == State.SENT
    assert kommo.leads[10_001]["status_id"] == LEGAL


def test_an_unknown_move_is_dropped_when_the_manager_moved_the_deal_elsewhere(account, client, kommo):
    lead_row(account, 10_001)
    kommo.lead(10_001, SIGNING, PIPELINE)
    blocked(account, 10_001, 1)
    OutboundChange.objects.exclude(kind=Kind.LEAD_STATUS).delete()
    kommo.time_out_next("/api/v4/leads", done=False, method="PATCH")
    outbound_changes_drain(account_id=account.pk, client=client)
    assert OutboundChange.objects.get().status == State.UNKNOWN
    OutboundChange.objects.update(next_attempt_at=None)
    kommo.leads[10_001]["status_id"] = 142  # the manager closed the deal meanwhile
    before = len(kommo.requests)

    outbound_changes_drain(account_id=account.pk, client=client)

    assert [request.method for request in kommo.requests[before:]] == ["GET"]
    assert OutboundChange.objects.get().status == State.SKIPPED
    assert kommo.leads[10_001]["status_id"] == 142


# What PostgreSQL does, from the second deal's row on, to the drain recording its moves back: an error, or
# the drain's own session terminated (as a restart or a failover does), in the middle of the INSERTs.
STAGE_CHANGE_FAULTS = {
    "an error": "RAISE EXCEPTION 'the database failed mid-batch'",
    "the session terminated": "PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(10)",
}


@pytest.fixture
def stage_change_fault(request: pytest.FixtureRequest) -> Iterator[Callable[[str, int], None]]:
    """``fail(fault, lead_pk)``: every INSERT of a stage change of that deal meets the fault (a trigger);
    removed after the test."""
    table = StageChange._meta.db_table

    def fail(fault: str, lead_pk: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE FUNCTION test_stage_change_fault() RETURNS trigger LANGUAGE plpgsql AS $$"
                f" BEGIN IF NEW.lead_id = {int(lead_pk)} THEN {STAGE_CHANGE_FAULTS[fault]}; END IF;"
                " RETURN NEW; END $$"
            )
            cursor.execute(
                f"CREATE TRIGGER test_stage_change_fault BEFORE INSERT ON {table}"
                " FOR EACH ROW EXECUTE FUNCTION test_stage_change_fault()"
            )

    yield fail
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER IF EXISTS test_stage_change_fault ON {table}")
        cursor.execute("DROP FUNCTION IF EXISTS test_stage_change_fault()")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fault", list(STAGE_CHANGE_FAULTS))
def test_a_database_failure_while_the_drain_records_its_moves_back_loses_none_and_sends_none_twice(
    account, client, kommo, stage_change_fault, fault
):
    """Kommo has accepted the drain's three moves back and their outcomes are stored; recording them in
    the stage history fails at the second deal's row. The batch is rolled back whole (no move of it
    recorded, the first one's row included); the moves stay sent, not echoed yet: the next drain sends
    none of them again, and Kommo's report of each is still recognised as the portal's own move."""
    leads = [lead_row(account, 10_000 + n) for n in (1, 2, 3)]
    for n, lead in enumerate(leads, start=1):
        kommo.lead(lead.kommo_id, SIGNING, PIPELINE)
        blocked(account, lead.kommo_id, n)
    OutboundChange.objects.exclude(kind=Kind.LEAD_STATUS).delete()
    stage_change_fault(fault, leads[1].pk)

    with pytest.raises(DatabaseError, match=r"failed mid-batch|terminating connection"):
        outbound_changes_drain(account_id=account.pk, kinds=[Kind.LEAD_STATUS], client=client)

    patches = kommo.calls_to("/api/v4/leads", "PATCH")
    assert len(patches) == 1 and all(kommo.leads[lead.kommo_id]["status_id"] == LEGAL for lead in leads)
    assert not StageChange.objects.exists()
    moves = list(OutboundChange.objects.order_by("entity_kommo_id"))
    assert [(move.status, move.attempts, move.echoed_at) for move in moves] == [(State.SENT, 1, None)] * 3

    connection.close()  # the worker's next task starts on a connection of its own
    result = outbound_changes_drain(account_id=account.pk, kinds=[Kind.LEAD_STATUS], client=client)

    assert (result.sent, len(kommo.calls_to("/api/v4/leads", "PATCH"))) == (0, 1)
    with transaction.atomic():  # Kommo's reports of the moves, as webhook processing records them
        claimed = outbound_move_echoes_claim(
            account_id=account.pk, moves=[(lead.kommo_id, LEGAL, PIPELINE) for lead in leads]
        )
    assert [change.pk if change else None for change in claimed] == [move.pk for move in moves]


def test_a_task_whose_outcome_is_unknown_is_found_by_its_marker_and_not_created_twice(account, client, kommo):
    lead_row(account, 10_001)
    blocked(account, 10_001, 1)
    OutboundChange.objects.exclude(kind=Kind.TASK_CREATE).delete()
    # Kommo creates the task; its answer is lost on the way back.
    kommo.time_out_next("/api/v4/tasks", done=True)
    outbound_changes_drain(account_id=account.pk, client=client)
    task = OutboundChange.objects.get()
    assert task.status == State.UNKNOWN
    (created,) = kommo.tasks
    OutboundChange.objects.update(next_attempt_at=None)
    before = len(kommo.requests)

    outbound_changes_drain(account_id=account.pk, client=client)

    task.refresh_from_db()
    assert (task.status, task.result_ids) == (State.SENT, [created])
    assert [request.method for request in kommo.requests[before:]] == ["GET"]
    assert list(kommo.tasks) == [created]


def test_a_timed_out_task_is_created_again_when_kommo_does_not_have_it(account, client, kommo):
    lead_row(account, 10_001)
    blocked(account, 10_001, 1)
    OutboundChange.objects.exclude(kind=Kind.TASK_CREATE).delete()
    kommo.time_out_next("/api/v4/tasks", done=False)
    outbound_changes_drain(account_id=account.pk, client=client)
    assert OutboundChange.objects.get().status == State.UNKNOWN
    assert not kommo.tasks
    OutboundChange.objects.update(next_attempt_at=None)
    before = len(kommo.requests)

    outbound_changes_drain(account_id=account.pk, client=client)

    assert [request.method for request in kommo.requests[before:]] == ["GET", "POST"]
    assert OutboundChange.objects.get().status == State.SENT
    assert len(kommo.tasks) == 1


def test_no_second_open_task_for_the_same_deal_and_rule(account, client, api):
    lead_row(account, 10_001)
    blocked(account, 10_001, 1)
    OutboundChange.objects.exclude(kind=Kind.TASK_CREATE).delete()
    OutboundChange.objects.update(status=State.SENT, result_ids=[555])
    blocked(account, 10_001, 2)  # the manager tried again before doing the first task
    OutboundChange.objects.exclude(kind=Kind.TASK_CREATE).delete()
    first_text = OutboundChange.objects.get(idempotency_key="gate:7:1:task").payload["text"]
    api.get(BASE + "/api/v4/tasks", json={"_embedded": {"tasks": [task_json(555, 10_001, first_text)]}})

    outbound_changes_drain(account_id=account.pk, client=client)

    second = OutboundChange.objects.get(idempotency_key="gate:7:2:task")
    assert second.status == State.SKIPPED and "#555" in second.error
    assert [call.request.method for call in api.calls] == ["GET"]


def test_a_new_task_is_created_once_the_previous_one_was_completed(account, client, api):
    lead_row(account, 10_001)
    blocked(account, 10_001, 1)
    OutboundChange.objects.exclude(kind=Kind.TASK_CREATE).delete()
    OutboundChange.objects.update(status=State.SENT, result_ids=[555])
    blocked(account, 10_001, 2)
    OutboundChange.objects.exclude(kind=Kind.TASK_CREATE).delete()
    first_text = OutboundChange.objects.get(idempotency_key="gate:7:1:task").payload["text"]
    done = task_json(555, 10_001, first_text, completed=True)
    api.get(BASE + "/api/v4/tasks", json={"_embedded": {"tasks": [done]}})
    api.add_callback("POST", BASE + "/api/v4/tasks", callback=echo_write("tasks"))

    outbound_changes_drain(account_id=account.pk, client=client)

    assert OutboundChange.objects.get(idempotency_key="gate:7:2:task").status == State.SENT


def test_a_rate_limited_write_waits_for_retry_after(account, client, api):
    lead_row(account, 10_001)
    blocked(account, 10_001, 1)
    OutboundChange.objects.exclude(kind=Kind.LEAD_STATUS).delete()
    api.patch(
        BASE + "/api/v4/leads",
        status=429,
        json={"title": "Too Many Requests", "status": 429, "detail": "slow down", "retry_after": 120},
        content_type="application/problem+json",
    )

    result = outbound_changes_drain(account_id=account.pk, client=client)

    move = OutboundChange.objects.get()
    assert move.status == State.PENDING
    assert move.next_attempt_at is not None
    assert 110 <= result.retry_in <= 121


def test_a_permanent_error_fails_the_change_without_retrying(account, client, api):
    lead_row(account, 10_001)
    blocked(account, 10_001, 1)
    OutboundChange.objects.exclude(kind=Kind.NOTE_CREATE).delete()
    api.post(
        BASE + "/api/v4/leads/notes",
        status=403,
        json={"title": "Forbidden", "status": 403, "detail": "Client doesn't have the required scope"},
        content_type="application/problem+json",
    )

    result = outbound_changes_drain(account_id=account.pk, client=client)

    note = OutboundChange.objects.get()
    assert note.status == State.FAILED and "required scope" in note.error
    assert result.retry_in is None
    assert outbound_change_retry(change=note)
    note.refresh_from_db()
    assert note.status == State.PENDING and note.attempts == 0


def test_an_open_circuit_breaker_stops_the_drain_and_keeps_the_changes(account, client, api):
    lead_row(account, 10_001)
    blocked(account, 10_001, 1)
    KommoAccount.objects.filter(pk=account.pk).update(
        blocked_since=dt.datetime.now(tz=dt.UTC), blocked_reason="403"
    )

    result = outbound_changes_drain(account_id=account.pk, client=client)

    assert result.blocked and result.retry_in is None
    assert len(api.calls) == 0
    assert set(OutboundChange.objects.values_list("status", flat=True)) == {State.PENDING}
    assert set(OutboundChange.objects.values_list("attempts", flat=True)) == {0}


def test_the_same_intention_is_queued_once(account):
    blocked(account, 10_001, 1)
    blocked(account, 10_001, 1)
    assert OutboundChange.objects.count() == 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("meanwhile", ["committed before the insert", "committed while the insert waits"])
def test_a_key_queued_meanwhile_by_another_transaction_is_its_row_and_the_others_are_queued_once(
    account, monkeypatch, meanwhile
):
    """Between the read of the keys and the INSERT of the new ones another worker queues one of them: the
    INSERT fails on the unique key (at once, or once the other commits), and the writes are queued one by
    one instead: that key is the other worker's row, the rest are new, none twice and none lost."""
    keys = [f"gate:7:{n}:note" for n in range(3)]
    writes = [
        Intended(
            kind=Kind.NOTE_CREATE, entity_kommo_id=10_001, payload={"text": f"note {n}"}, idempotency_key=key
        )
        for n, key in enumerate(keys)
    ]
    inserted, failures = threading.Event(), []

    def another_worker() -> None:
        try:
            with transaction.atomic():
                OutboundChange.objects.create(
                    account=account,
                    kind=Kind.NOTE_CREATE,
                    entity_kommo_id=10_001,
                    payload={"text": "the other worker's"},
                    idempotency_key=keys[1],
                )
                inserted.set()
                if meanwhile == "committed while the insert waits":
                    with connection.cursor() as cursor:  # this thread's own connection
                        for _ in range(200):
                            cursor.execute(
                                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                            )
                            if cursor.fetchone()[0]:
                                break
                            time.sleep(0.05)
                        else:
                            failures.append("the INSERT never waited for this transaction")
        except Exception as exc:
            failures.append(exc)
        finally:
            connections.close_all()

    other = threading.Thread(target=another_worker)
    insert = OutboundChange.objects.bulk_create
    inserts: list[int] = []

    def insert_after_the_other(rows, *args, **kwargs):  # type: ignore[no-untyped-def]
        inserts.append(len(rows))
        other.start()
        if meanwhile == "committed before the insert":
            other.join(30)
        else:
            assert inserted.wait(30)
        return insert(rows, *args, **kwargs)

    monkeypatch.setattr(OutboundChange.objects, "bulk_create", insert_after_the_other)
    with transaction.atomic():  # the caller's transaction, as the gates' is
        rows = outbound_changes_enqueue(account=account, writes=writes)
    other.join(30)

    assert not failures and inserts == [3]
    theirs = OutboundChange.objects.get(idempotency_key=keys[1])
    assert [row.idempotency_key for row in rows] == keys
    assert rows[1].pk == theirs.pk and theirs.payload == {"text": "the other worker's"}
    stored = OutboundChange.objects.order_by("idempotency_key")
    assert [row.idempotency_key for row in stored] == keys
    assert {row.pk for row in rows} == {row.pk for row in stored}
    assert [row.payload["text"] for row in stored] == ["note 0", "the other worker's", "note 2"]


def task_json(task_id: int, lead_id: int, text: str, completed: bool = False) -> dict[str, Any]:
    return {
        "id": task_id,
        "text": text,
        "entity_id": lead_id,
        "entity_type": "leads",
        "is_completed": completed,
        "complete_till": 1746100800,
        "responsible_user_id": 501,
    }


def test_a_drain_of_moves_only_leaves_tasks_and_notes_for_later(account, client, api):
    lead_row(account, 10_001)
    blocked(account, 10_001, 1)
    api.add_callback("PATCH", BASE + "/api/v4/leads", callback=echo_write("leads", updated=True))

    result = outbound_changes_drain(account_id=account.pk, kinds=[Kind.LEAD_STATUS], client=client)

    assert [call.request.method for call in api.calls] == ["PATCH"]
    assert result.retry_in is None
    states = dict(OutboundChange.objects.values_list("kind", "status"))
    assert states == {
        Kind.LEAD_STATUS: State.SENT,
        Kind.TASK_CREATE: State.PENDING,
        Kind.NOTE_CREATE: State.PENDING,
    }


# -- the planned drain (flush): when the queue goes out ---------------------------------------------------


def answer_writes(api: responses.RequestsMock) -> None:
    api.add_callback("PATCH", BASE + "/api/v4/leads", callback=echo_write("leads", updated=True))
    api.add_callback("POST", BASE + "/api/v4/tasks", callback=echo_write("tasks"))
    api.add_callback("POST", BASE + "/api/v4/leads/notes", callback=echo_write("notes"))


def queued_earlier(seconds: float) -> None:
    """Every change was queued ``seconds`` ago (the burst that queued them is that far behind)."""
    OutboundChange.objects.update(created=timezone.now() - dt.timedelta(seconds=seconds))


def test_a_lone_block_is_moved_back_tasked_and_noted_in_one_flush(account, client, api):
    lead_row(account, 10_001)
    blocked(account, 10_001, 1)
    answer_writes(api)

    result = outbound_changes_flush(account_id=account.pk, client=client)

    assert writes(api) == [
        ("PATCH", "/api/v4/leads", 1),
        ("POST", "/api/v4/tasks", 1),
        ("POST", "/api/v4/leads/notes", 1),
    ]
    assert result.sent == 3 and result.next_in is None


def test_tasks_and_notes_wait_behind_other_callers_for_a_slot_and_moves_back_do_not(
    account, client, api, monkeypatch
):
    lead_row(account, 10_001)
    blocked(account, 10_001, 1)
    answer_writes(api)
    behind: list[bool] = []
    acquire = client.limiter.acquire

    def spy(*args: Any, behind_others: bool = False, **kwargs: Any) -> float:
        behind.append(behind_others)
        return acquire(*args, behind_others=behind_others, **kwargs)

    monkeypatch.setattr(client.limiter, "acquire", spy)

    outbound_changes_flush(account_id=account.pk, client=client)

    calls = [
        call.request.method + " " + call.request.url.split("?")[0].removeprefix(BASE) for call in api.calls
    ]
    assert list(zip(calls, behind, strict=True)) == [
        ("PATCH /api/v4/leads", False),
        ("POST /api/v4/tasks", True),
        ("POST /api/v4/leads/notes", True),
    ]


def test_100_blocked_decisions_drain_in_two_patches_one_task_post_and_one_note_post(account, client, api):
    for n in range(100):
        lead_row(account, 10_000 + n)
        blocked(account, 10_000 + n, n)
    answer_writes(api)
    queued_earlier(0)

    # One burst, planned at one instant: however slow the machine, the moves' PATCHes are not the calm
    # window passing.
    with time_machine.travel(timezone.now(), tick=False):
        first = outbound_changes_flush(account_id=account.pk, client=client)
    # The moves went out at once (two full PATCHes); tasks and notes wait until the burst is over.
    assert writes(api) == [("PATCH", "/api/v4/leads", 50), ("PATCH", "/api/v4/leads", 50)]
    assert first.next_in is not None and 0 < first.next_in <= CALM_WINDOW.total_seconds()
    queued_earlier(CALM_WINDOW.total_seconds() + 0.1)

    second = outbound_changes_flush(account_id=account.pk, client=client)

    assert writes(api)[2:] == [("POST", "/api/v4/tasks", 100), ("POST", "/api/v4/leads/notes", 100)]
    assert second.next_in is None
    assert set(OutboundChange.objects.values_list("status", flat=True)) == {State.SENT}


def test_moves_of_a_burst_wait_for_company_and_go_when_a_patch_is_full(account, client, api):
    # The burst happens at one instant: however slow the machine, queuing it does not outlast the window.
    with time_machine.travel(timezone.now(), tick=False):
        for n in range(BURST_MOVES):
            blocked(account, 10_000 + n, n)
        answer_writes(api)

        held = outbound_changes_flush(account_id=account.pk, client=client)

        assert len(api.calls) == 0 and held.next_in is not None and held.next_in > 0
        plan = outbound_drain_plan(account_id=account.pk)
        assert plan.moves_in is not None and 0 < plan.moves_in <= MOVE_HOLD_MAX.total_seconds()
        for n in range(BURST_MOVES, LEADS_BATCH):
            blocked(account, 10_000 + n, n)

        outbound_changes_flush(account_id=account.pk, client=client)

    assert writes(api) == [("PATCH", "/api/v4/leads", LEADS_BATCH)]


def test_a_held_move_goes_once_it_has_waited_long_enough(account, client, api):
    for n in range(BURST_MOVES):
        blocked(account, 10_000 + n, n)
    OutboundChange.objects.filter(kind=Kind.LEAD_STATUS, idempotency_key="gate:move:0").update(
        created=timezone.now() - MOVE_HOLD_MAX
    )

    assert outbound_drain_plan(account_id=account.pk).moves_in == 0


def test_moves_wait_while_kommo_has_told_of_more_than_was_processed(account):
    blocked(account, 10_001, 1)
    assert outbound_drain_plan(account_id=account.pk).moves_in == 0
    for _ in range(BACKLOG_EVENTS):
        WebhookEvent.objects.create(
            account=account, body=b"", content_type="application/x-www-form-urlencoded"
        )

    assert (
        outbound_drain_plan(account_id=account.pk, backlog=webhook_backlog(account_id=account.pk)).moves_in
        > 0
    )


def delivery(account: KommoAccount, events: str, status: str = WebhookEvent.Status.RECEIVED) -> None:
    """A delivery of the given sections (what intake stores from its keys), waiting by default."""
    WebhookEvent.objects.create(
        account=account,
        body=b"",
        content_type="application/x-www-form-urlencoded",
        events=events,
        status=status,
    )


def test_a_steady_stream_is_not_a_burst_for_the_echoes_of_the_portals_own_writes(account):
    # 10 moves a second, each blocked: Kommo reports each move twice (leads[status], leads[update]) and
    # sends back the portal's move back (twice again), its task (task[add]) and its note (leads[note]).
    # Half a second behind, a handful of moves wait to be processed, and three times as many echoes.
    blocked(account, 10_001, 1)
    for _ in range(4):
        delivery(account, "leads[status]")
    for events in ("leads[update]", "task[add]", "leads[note]"):
        for _ in range(4):
            delivery(account, events)

    plan = outbound_drain_plan(
        account_id=account.pk,
        backlog=webhook_backlog(account_id=account.pk),
        moves_backlog=webhook_moves_backlog(account_id=account.pk),
    )

    assert plan.moves_in == 0
    assert webhook_moves_backlog(account_id=account.pk) == 4
    # Tasks and notes still wait for all to be calm: every delivery counts for that.
    assert plan.follow_ups_in is not None and plan.follow_ups_in > 0


def test_moves_wait_while_kommo_has_told_of_more_moves_than_were_processed(account):
    blocked(account, 10_001, 1)
    for _ in range(BACKLOG_EVENTS):
        delivery(account, "leads[status] leads[update]")

    plan = outbound_drain_plan(
        account_id=account.pk,
        backlog=webhook_backlog(account_id=account.pk),
        moves_backlog=webhook_moves_backlog(account_id=account.pk),
    )

    assert plan.moves_in is not None and plan.moves_in > 0


def reported(account: KommoAccount, seconds_ago: float) -> None:
    """The moves back waiting were queued for moves reported this long ago (what the gates write)."""
    for change in OutboundChange.objects.filter(account=account, kind=Kind.LEAD_STATUS):
        change.payload["reported_at"] = (timezone.now() - dt.timedelta(seconds=seconds_ago)).timestamp()
        change.save(update_fields=["payload"])


def test_a_move_back_waits_for_company_no_longer_than_the_bound_after_its_report_unless_a_burst_is_sure(
    account,
):
    # A backlog of some deliveries of moves may be a burst, or a steady stream the worker is half a second
    # behind: the move back waits for company, but no longer than MOVE_WAIT_MAX after its move's report.
    with time_machine.travel(timezone.now(), tick=False):
        blocked(account, 10_001, 1)
        for _ in range(BACKLOG_EVENTS):
            delivery(account, "leads[status] leads[update]")

        def plan() -> float | None:
            return outbound_drain_plan(
                account_id=account.pk,
                backlog=webhook_backlog(account_id=account.pk),
                moves_backlog=webhook_moves_backlog(account_id=account.pk),
            ).moves_in

        reported(account, 0.1)
        assert plan() == pytest.approx(MOVE_WAIT_MAX.total_seconds() - 0.1)
        reported(account, MOVE_WAIT_MAX.total_seconds() + 0.01)
        assert plan() == 0  # held for the backlog until now (3 s), sent at once since the bound
        # A backlog no steady stream leaves is a burst for sure: the move back waits for company.
        for _ in range(BURST_BACKLOG - BACKLOG_EVENTS):
            delivery(account, "leads[status] leads[update]")
        waiting = plan()
        assert waiting is not None and waiting > 0


def test_a_steady_stream_decided_in_a_bunch_is_not_held_but_a_burst_decided_late_is(account):
    # A worker 1.5 s behind a steady 10 moves a second decides 15 of them at once: 15 moves back queued
    # within a second, but made 0.1 s apart by Kommo's clock, which no burst is. They go at once. The same
    # 15 made within half a second are a burst, however late they are reported and decided: they wait.
    with time_machine.travel(timezone.now(), tick=False):
        for n in range(BURST_MOVES):
            blocked(account, 10_000 + n, n)

        def report(spacing: float) -> None:
            moves = OutboundChange.objects.filter(kind=Kind.LEAD_STATUS).order_by("pk")
            for index, change in enumerate(moves):
                ago = 2.0 - index * spacing
                change.payload["moved_at"] = (timezone.now() - dt.timedelta(seconds=ago)).timestamp()
                change.payload["reported_at"] = (timezone.now() - dt.timedelta(seconds=1.9)).timestamp()
                change.save(update_fields=["payload"])

        report(0.1)
        assert outbound_drain_plan(account_id=account.pk).moves_in == 0
        report(0.03)
        held = outbound_drain_plan(account_id=account.pk).moves_in
        assert held is not None and held > 0


def test_the_moves_backlog_counts_the_deliveries_of_moves_not_yet_processed(account):
    for status in WebhookEvent.Status:
        delivery(account, "leads[status] leads[update]", status)
    delivery(account, "contacts[add] leads[status]")  # a Digital Pipeline hook, or a mixed delivery
    delivery(account, "leads[add]")

    # received and being processed; not processed, ignored, failed, dead or rejected ones
    assert webhook_moves_backlog(account_id=account.pk) == 3
    assert webhook_backlog(account_id=account.pk) == 4


def recorded_moves(account: KommoAccount, at: dt.datetime, count: int, **fields: Any) -> None:
    """``count`` moves to Signing of deals of their own, recorded as webhook processing records them:
    made at ``at`` by Kommo's clock (``fields`` change the rows: an echo, a time not Kommo's)."""
    first = 20_000 + Lead.objects.count()
    leads = Lead.objects.bulk_create(
        Lead(
            account=account,
            kommo_id=first + n,
            name=f"Deal {first + n}",
            pipeline_kommo_id=PIPELINE,
            status_kommo_id=SIGNING,
        )
        for n in range(count)
    )
    values = {"source": StageChange.Source.WEBHOOK, "sources": [StageChange.Source.WEBHOOK], **fields}
    StageChange.objects.bulk_create(
        StageChange(
            account=account,
            lead=lead,
            from_status_kommo_id=LEGAL,
            from_pipeline_kommo_id=PIPELINE,
            to_status_kommo_id=SIGNING,
            to_pipeline_kommo_id=PIPELINE,
            at=at,
            **values,
        )
        for lead in leads
    )


def decided(account: KommoAccount, moves: int, *, made: dt.datetime, reported_ago: float) -> None:
    """The gates decided ``moves`` of the moves recorded at ``made``: their moves back wait, for moves
    reported ``reported_ago`` seconds ago (the gates write both times in the payload)."""
    first = OutboundChange.objects.filter(kind=Kind.LEAD_STATUS).count()
    for n in range(first, first + moves):
        blocked(account, 10_000 + n, n)
    reported_at = (timezone.now() - dt.timedelta(seconds=reported_ago)).timestamp()
    for change in OutboundChange.objects.filter(kind=Kind.LEAD_STATUS).order_by("pk")[first:]:
        change.payload.update(moved_at=made.timestamp(), reported_at=reported_at)
        change.save(update_fields=["payload"])


def kommo_second(ago: float = 1.0) -> dt.datetime:
    """A time of Kommo's clock (whole seconds) about ``ago`` seconds back."""
    return (timezone.now() - dt.timedelta(seconds=ago)).replace(microsecond=0)


def test_a_burst_kommo_reported_together_holds_its_first_moves_back_before_the_gates_decided_it(account):
    # 40 deals moved at once (one batch PATCH in Kommo): webhook processing has recorded them all, the
    # gates have decided 3. Nothing else shows a burst yet (3 moves back queued, no delivery waiting), yet
    # those 3 wait for company past MOVE_WAIT_MAX after their report, until BURST_HOLD_MAX.
    with time_machine.travel(timezone.now(), tick=False):
        second = kommo_second()
        recorded_moves(account, second, 40)
        decided(account, 3, made=second, reported_ago=MOVE_WAIT_MAX.total_seconds() + 0.1)

        # The gates, after deciding the 3, know that 37 are left: they look again soon. A flush that cannot
        # know (the Kommo boundary's own) holds them to the bound.
        for undecided, held in ((37, BACKLOG_RECHECK), (None, BURST_HOLD_MAX)):
            plan = outbound_drain_plan(account_id=account.pk, moves_backlog=0, undecided=undecided)
            assert plan.moves_in == pytest.approx(held.total_seconds())


@pytest.mark.parametrize(
    "moves",
    ["a steady 10 a second", "the portal's own moves back coming back", "moves not timed by Kommo"],
)
def test_moves_kommo_did_not_report_together_are_no_sure_burst(account, moves):
    # Five deliveries of moves wait (it may be a burst), and the moves back were reported 0.6 s ago: held
    # for a sure burst, they would still wait; they go, for the moves recorded in their Kommo second are
    # 10 (a steady stream, decided in a bunch: 15 moves back), or 40 that do not count.
    with time_machine.travel(timezone.now(), tick=False):
        second = kommo_second(2)
        if moves == "a steady 10 a second":
            for later in (0, 1):
                recorded_moves(account, second + dt.timedelta(seconds=later), 10)
            decided(account, 10, made=second, reported_ago=0.6)
            decided(account, 5, made=second + dt.timedelta(seconds=1), reported_ago=0.6)
        else:
            fields = (
                {"source": StageChange.Source.GATE, "sources": [StageChange.Source.WEBHOOK, "gate"]}
                if moves == "the portal's own moves back coming back"
                else {"at_is_exact": False}
            )
            recorded_moves(account, second, 40, **fields)
            decided(account, 3, made=second, reported_ago=0.6)

        plan = outbound_drain_plan(account_id=account.pk, moves_backlog=BACKLOG_EVENTS, undecided=5)

        assert plan.moves_in == 0


def test_a_burst_kommo_reported_together_goes_at_once_when_its_last_move_is_decided(account, client, api):
    # The gates decided the last of the 40 recorded moves: none is left for them and no delivery of moves
    # waits, so the burst is over and its moves back go in one PATCH, not when the hold runs out.
    answer_writes(api)
    with time_machine.travel(timezone.now(), tick=False):
        second = kommo_second()
        recorded_moves(account, second, 40)
        decided(account, 40, made=second, reported_ago=1)

        def plan(**told: int) -> float | None:
            return outbound_drain_plan(account_id=account.pk, **told).moves_in

        assert plan(moves_backlog=0, undecided=1) == pytest.approx(BACKLOG_RECHECK.total_seconds())
        assert plan(moves_backlog=1, undecided=0) == pytest.approx(BACKLOG_RECHECK.total_seconds())
        assert plan(moves_backlog=0) == pytest.approx(BURST_HOLD_MAX.total_seconds())  # not known: held
        assert plan(moves_backlog=0, undecided=0) == 0

        outbound_changes_flush(account_id=account.pk, client=client, moves_backlog=0, undecided=0)

    assert writes(api)[0] == ("PATCH", "/api/v4/leads", 40)


def test_a_held_burst_sends_its_full_patches_and_keeps_the_rest_waiting_for_company(account, client, api):
    # 82 of the 100 moves Kommo reported together are decided: a full PATCH goes (the oldest 50), the 32
    # others wait for the 18 still undecided rather than going in a PATCH of their own.
    answer_writes(api)
    with time_machine.travel(timezone.now(), tick=False):
        second = kommo_second()
        recorded_moves(account, second, 100)
        decided(account, 82, made=second, reported_ago=1)

        flushed = outbound_changes_flush(account_id=account.pk, client=client, moves_backlog=0, undecided=18)

        assert writes(api) == [("PATCH", "/api/v4/leads", LEADS_BATCH)]
        oldest = OutboundChange.objects.filter(kind=Kind.LEAD_STATUS).order_by("pk")[:LEADS_BATCH]
        assert {change.status for change in oldest} == {State.SENT}
        assert flushed.next_in is not None and flushed.next_in > 0
        # Tasks and notes wait for the moves back of the burst: they go right after them.
        assert not any(method == "POST" for method, _, _ in writes(api))


def test_a_burst_kommo_reported_together_waits_for_company_longer_than_others_but_not_forever(account):
    with time_machine.travel(timezone.now(), tick=False):
        second = kommo_second(MOVE_HOLD_MAX.total_seconds() + 2)
        recorded_moves(account, second, 40)
        decided(account, 3, made=second, reported_ago=MOVE_HOLD_MAX.total_seconds() + 1.5)
        queued_earlier(MOVE_HOLD_MAX.total_seconds() + 1)

        # Past the bound of any other hold, the first moves back still wait for the rest of the burst...
        plan = outbound_drain_plan(account_id=account.pk, moves_backlog=0)
        assert plan.moves_in == pytest.approx((BURST_HOLD_MAX - MOVE_HOLD_MAX).total_seconds() - 1)
        plan = outbound_drain_plan(account_id=account.pk, moves_backlog=0, undecided=37)
        assert plan.moves_in == pytest.approx(BACKLOG_RECHECK.total_seconds())
        # ...until BURST_HOLD_MAX after the oldest was queued, decided or not.
        queued_earlier(BURST_HOLD_MAX.total_seconds())
        assert outbound_drain_plan(account_id=account.pk, moves_backlog=0, undecided=37).moves_in == 0


def test_tasks_and_notes_of_a_steady_stream_go_out_at_the_latest_after_the_follow_up_bound(account):
    # The stream is queued and planned at one instant: however slow the machine, queuing it does not
    # outlast the bound.
    with time_machine.travel(timezone.now(), tick=False):
        for n in range(CALM_MOVES):
            blocked(account, 10_000 + n, n)
        OutboundChange.objects.filter(kind=Kind.LEAD_STATUS).update(status=State.SENT)

        plan = outbound_drain_plan(account_id=account.pk)
        assert plan.moves_in is None and plan.follow_ups_in is not None and plan.follow_ups_in > 0

    OutboundChange.objects.filter(idempotency_key="gate:7:0:task").update(
        created=timezone.now() - FOLLOW_UP_MAX
    )
    assert outbound_drain_plan(account_id=account.pk).follow_ups_in == 0


def test_one_flush_is_scheduled_at_a_time(account):
    assert outbound_flush_reserve(account_id=account.pk, delay=2.0)
    assert not outbound_flush_reserve(account_id=account.pk, delay=3.0)  # the one at 2 s sees it too
    assert outbound_flush_reserve(account_id=account.pk, delay=0.5)  # sooner: scheduled as well


@pytest.mark.redis
def test_a_flush_that_cannot_be_published_gives_its_reservation_back(
    account,
    own_redis: RedisServer,
):
    own_redis.stop()

    with pytest.raises(BrokerError):
        outbound_flush_schedule(account_id=account.pk, delay=2.0)

    # No flush was scheduled, and none is believed to be: the next caller schedules one at once rather
    # than trusting the reservation until it expires (FLUSH_LOST_AFTER).
    account.refresh_from_db()
    assert account.outbound_flush_at is None
    own_redis.start()  # the same port: the broker is back
    assert outbound_flush_schedule(account_id=account.pk, delay=2.0)


# -- the circuit breaker ---------------------------------------------------------------------------------


def test_held_changes_are_drained_once_the_circuit_breaker_is_reset(
    account, api, django_capture_on_commit_callbacks
):
    for n in range(100):
        lead_row(account, 10_000 + n)
        blocked(account, 10_000 + n, n)
    KommoAccount.objects.filter(pk=account.pk).update(
        blocked_since=dt.datetime.now(tz=dt.UTC), blocked_reason="403"
    )
    account.refresh_from_db()
    answer_writes(api)
    assert outbound_changes_flush(account_id=account.pk).blocked and len(api.calls) == 0

    with mock.patch("apps.kommo.tasks.outbound_flush.apply_async") as enqueue:
        with django_capture_on_commit_callbacks(execute=True):
            assert account_unblock(account=account)
    enqueue.assert_called_once_with((account.pk,), kwargs={"reserved": False})
    queued_earlier(60)  # held for a minute
    outbound_flush(account.pk, reserved=False)  # what the enqueued task runs

    assert writes(api) == [
        ("PATCH", "/api/v4/leads", 50),
        ("PATCH", "/api/v4/leads", 50),
        ("POST", "/api/v4/tasks", 100),
        ("POST", "/api/v4/leads/notes", 100),
    ]
    assert set(OutboundChange.objects.values_list("status", flat=True)) == {State.SENT}


def test_resetting_a_breaker_with_nothing_held_enqueues_nothing(account, django_capture_on_commit_callbacks):
    KommoAccount.objects.filter(pk=account.pk).update(blocked_since=dt.datetime.now(tz=dt.UTC))
    with mock.patch("apps.kommo.tasks.outbound_flush.apply_async") as enqueue:
        with django_capture_on_commit_callbacks(execute=True):
            account_unblock(account=account)
    enqueue.assert_not_called()
