"""Webhook processing under faults (issue 11, the worker side): a poisoned body fails alone, a claim that
keeps crashing ends dead, a transient database error is retried, Kommo's block holds events until the
circuit breaker closes, and a killed worker's events are taken up again within a minute.

In-process tests answer Kommo with the suite's fake Kommo (``responses``); the others run a real Celery
worker (and beat) on Redis and PostgreSQL against the Kommo sandbox, the portal on ``live_server``."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

import pytest
import requests
import responses
from celery.exceptions import SoftTimeLimitExceeded
from django.db import OperationalError, connection
from django.test import Client
from django.utils import timezone

from apps.flows import tasks
from apps.kommo.models import KommoAccount, Lead, StageChange, WebhookEvent
from apps.kommo.services.accounts import account_unblock
from apps.kommo.templatetags.kommo_webhooks import kommo_webhook_problems
from apps.kommo.webhooks import intake, processing
from apps.kommo.webhooks.parser import encode_form
from apps.kommo.webhooks.processing import Heartbeat, Policy, webhook_events_claim, webhook_events_sweep
from tests.kommo.sandbox_support import sandbox_admin, sandbox_api
from tests.kommo.test_webhook_end_to_end import connect, moves_of, open_leads_with_a_next_stage
from tests.kommo.test_webhook_processing import deliver, run
from tests.kommo.webhook_support import account_for, recording
from tests.support.fake_kommo import FakeKommo
from tests.support.services import CeleryWorker, wait_for

Status = WebhookEvent.Status
# The body of the issue: an id of 5000 nines, which int() refuses (no account block: the token says whose).
POISON = b"leads[add][0][id]=" + b"9" * 5000
PIPELINE, FROM_STAGE, TO_STAGE = 788512, 16525555, 16525558


def status_body(lead_id: int, *, account: KommoAccount) -> bytes:
    """A ``leads[status]`` delivery of ``lead_id`` from FROM_STAGE to TO_STAGE, as Kommo encodes it."""
    return encode_form(
        {
            "leads": {
                "status": [
                    {
                        "id": lead_id,
                        "status_id": TO_STAGE,
                        "pipeline_id": PIPELINE,
                        "old_status_id": FROM_STAGE,
                        "last_modified": 1_615_985_846,
                        "modified_user_id": 1760815,
                    }
                ]
            },
            "account": {"id": account.kommo_id, "subdomain": account.subdomain},
        }
    )


BLOCK_PAGE = "<html><head><title>403 Forbidden</title></head><body><center>nginx</center></body></html>"


class PickyKommo(FakeKommo):
    """The fake Kommo refusing (400) any list naming one of ``refused``, and answering every call with the
    HTML 403 page of Kommo's block while ``blocked``."""

    refused: set[int]
    blocked = False

    def intercept(self, request: Any) -> tuple[int, dict[str, str], str] | None:
        import json
        from urllib.parse import parse_qs, urlsplit

        if self.blocked:
            return 403, {"Content-Type": "text/html"}, BLOCK_PAGE
        ids = {int(v) for v in parse_qs(urlsplit(request.url).query).get("filter[id][]", [])}
        if ids & getattr(self, "refused", set()):
            problem = {"title": "Bad Request", "status": 400, "detail": "filter[id] is invalid"}
            return 400, {"Content-Type": "application/problem+json"}, json.dumps(problem)
        return None


@pytest.fixture
def hooked() -> KommoAccount:
    return account_for(recording("leads-status.form.txt"))


@pytest.fixture
def kommo(hooked: KommoAccount):  # type: ignore[no-untyped-def]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield PickyKommo(mock, hooked.api_root)


@pytest.fixture
def web() -> Client:
    return Client()


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float | None]]:
    sent: list[tuple[int, float | None]] = []

    def record(*, event_id: int, countdown: float | None = None) -> None:
        sent.append((event_id, countdown))

    for module in (intake, processing, tasks):
        monkeypatch.setattr(module, "webhook_event_enqueue", record)
    return sent


# -- 1. a poisoned batch ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_poison_body_beside_twenty_genuine_ones_fails_alone_and_the_twenty_are_processed(
    web, hooked, kommo, enqueued
) -> None:
    lead_ids = list(range(40_000_001, 40_000_021))
    for lead_id in lead_ids:
        kommo.lead(lead_id, status_id=TO_STAGE, pipeline_id=PIPELINE)
    genuine = [deliver(web, hooked, status_body(lead_id, account=hooked)) for lead_id in lead_ids[:10]]
    poison = deliver(web, hooked, POISON)
    genuine += [deliver(web, hooked, status_body(lead_id, account=hooked)) for lead_id in lead_ids[10:]]

    run(genuine[0])  # one task, one batch of 21

    poison.refresh_from_db()
    assert (poison.status, poison.attempts) == (Status.FAILED, 1)
    assert "unreadable body" in poison.error and "5000 digits" in poison.error
    assert "WebhookParseError" in poison.traceback
    assert [WebhookEvent.objects.get(pk=e.pk).status for e in genuine] == [Status.PROCESSED] * 20
    assert StageChange.objects.filter(account=hooked).count() == 20
    assert len(kommo.calls_to("/api/v4/leads")) == 1  # still one batch: the poison took nothing down


@pytest.mark.django_db
def test_an_unexpected_error_reading_one_body_fails_that_event_alone(
    web, hooked, kommo, enqueued, monkeypatch
) -> None:
    kommo.lead(40_000_001, status_id=TO_STAGE, pipeline_id=PIPELINE)
    kommo.lead(40_000_002, status_id=TO_STAGE, pipeline_id=PIPELINE)
    good = deliver(web, hooked, status_body(40_000_001, account=hooked))
    bad = deliver(web, hooked, status_body(40_000_002, account=hooked))
    real = processing.plan_items

    def plan_items(items, **when):  # type: ignore[no-untyped-def]
        if items[0].id == 40_000_002:
            raise RecursionError("maximum recursion depth exceeded")
        return real(items, **when)

    monkeypatch.setattr(processing, "plan_items", plan_items)

    run(good)

    bad.refresh_from_db()
    assert (bad.status, bad.error) == (Status.FAILED, "RecursionError: maximum recursion depth exceeded")
    assert "RecursionError" in bad.traceback
    assert WebhookEvent.objects.get(pk=good.pk).status == Status.PROCESSED


@pytest.mark.django_db
def test_when_kommo_refuses_a_whole_batch_for_one_event_each_is_tried_alone_and_only_it_fails(
    web, hooked, kommo, enqueued
) -> None:
    lead_ids = [40_000_001, 40_000_002, 40_000_003]
    for lead_id in lead_ids:
        kommo.lead(lead_id, status_id=TO_STAGE, pipeline_id=PIPELINE)
    kommo.refused = {40_000_002}
    events = [deliver(web, hooked, status_body(lead_id, account=hooked)) for lead_id in lead_ids]

    run(events[0])

    statuses = [WebhookEvent.objects.get(pk=e.pk) for e in events]
    assert [e.status for e in statuses] == [Status.PROCESSED, Status.FAILED, Status.PROCESSED]
    assert "filter[id] is invalid" in statuses[1].error
    assert [e.attempts for e in statuses] == [1, 1, 1]
    assert StageChange.objects.filter(account=hooked).count() == 2


@pytest.mark.django_db
def test_a_claim_that_keeps_dying_with_its_worker_ends_dead_and_counted(hooked, settings) -> None:
    settings.KOMMO_WEBHOOK_MAX_ATTEMPTS = 3
    event = WebhookEvent.objects.create(account=hooked, body=POISON, status=Status.RECEIVED)
    policy = Policy.current()

    for attempt in (1, 2, 3):
        [claimed] = webhook_events_claim(event_id=event.pk, policy=policy)  # the worker then dies
        assert (claimed.status, claimed.attempts) == (Status.PROCESSING, attempt)
        assert webhook_events_sweep() == []  # its heartbeat is fresh: the claim still holds
        long_ago = timezone.now() - dt.timedelta(seconds=settings.KOMMO_WEBHOOK_CLAIM_EXPIRES_SECONDS + 1)
        WebhookEvent.objects.filter(pk=event.pk).update(heartbeat_at=long_ago)
        requeued = webhook_events_sweep()
        assert requeued == ([event.pk] if attempt < 3 else [])

    event.refresh_from_db()
    assert (event.status, event.attempts) == (Status.DEAD, 3)
    assert "died or was stopped on each of 3 attempts" in event.error
    assert webhook_events_claim(event_id=event.pk, policy=policy) == []
    assert kommo_webhook_problems()["dead"] == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_renews_the_claims_of_a_running_batch_and_only_those(hooked) -> None:
    policy = Policy.current()
    held = WebhookEvent.objects.create(account=hooked, body=b"x")
    [claimed] = webhook_events_claim(event_id=held.pk, policy=policy)
    other = WebhookEvent.objects.create(
        account=hooked, body=b"x", status=Status.PROCESSING, claimed_at=claimed.claimed_at
    )
    past = timezone.now() - dt.timedelta(minutes=5)
    WebhookEvent.objects.filter(pk__in=[held.pk, other.pk]).update(heartbeat_at=past)

    with Heartbeat(0.05) as heartbeat:
        heartbeat.hold([claimed])
        wait_for(
            lambda: WebhookEvent.objects.get(pk=held.pk).heartbeat_at > past,
            timeout=10,
            message="a heartbeat",
        )
        heartbeat.release([claimed])

    assert WebhookEvent.objects.get(pk=other.pk).heartbeat_at == past


# -- 5. a transient database error ----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "error",
    [
        "canceling statement due to statement timeout",
        "could not serialize access due to concurrent update",
        "deadlock detected",
        "server closed the connection unexpectedly",
    ],
)
def test_a_transient_database_error_while_writing_is_retried_like_a_transient_kommo_error(
    web, hooked, kommo, enqueued, monkeypatch, error: str
) -> None:
    kommo.lead(40_000_001, status_id=TO_STAGE, pipeline_id=PIPELINE)
    event = deliver(web, hooked, status_body(40_000_001, account=hooked))
    real = processing.leads_upsert_from_kommo
    failures = [OperationalError(error)]

    def upsert(**kwargs):  # type: ignore[no-untyped-def]
        if failures:
            raise failures.pop()
        return real(**kwargs)

    monkeypatch.setattr(processing, "leads_upsert_from_kommo", upsert)

    event = run(event)
    assert (event.status, event.attempts) == (Status.FAILED, 1)
    assert event.retry_at is not None and f"retrying in 30 s: {error}" in event.error
    assert enqueued[-1] == (event.pk, 30.0)

    WebhookEvent.objects.filter(pk=event.pk).update(retry_at=timezone.now())
    event = run(event)
    assert (event.status, event.attempts) == (Status.PROCESSED, 2)
    assert StageChange.objects.filter(account=hooked).count() == 1


@pytest.mark.django_db
def test_a_batch_stopped_by_the_soft_time_limit_is_retried_whole_not_split(
    web, hooked, kommo, enqueued, monkeypatch
) -> None:
    for lead_id in (40_000_001, 40_000_002):
        kommo.lead(lead_id, status_id=TO_STAGE, pipeline_id=PIPELINE)
    events = [
        deliver(web, hooked, status_body(lead_id, account=hooked)) for lead_id in (40_000_001, 40_000_002)
    ]

    def slow_kommo(client, plan):  # type: ignore[no-untyped-def]
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(processing, "_fetch", slow_kommo)

    run(events[0])

    for event in events:
        event.refresh_from_db()
        assert (event.status, event.attempts) == (Status.FAILED, 1)
        assert event.retry_at is not None
    assert enqueued[-1][1] == 30.0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_database_connection_killed_mid_batch_is_retried_and_then_processed(
    web, hooked, kommo, enqueued, monkeypatch
) -> None:
    """A real error: the worker's PostgreSQL session is terminated between the re-fetch and the writes."""
    kommo.lead(40_000_001, status_id=TO_STAGE, pipeline_id=PIPELINE)
    event = deliver(web, hooked, status_body(40_000_001, account=hooked))
    real = processing._fetch
    killed: list[int] = []

    def fetch_then_lose_the_connection(client, plan):  # type: ignore[no-untyped-def]
        fetched = real(client, plan)
        if not killed:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                killed.append(cursor.fetchone()[0])
            import psycopg

            s = connection.settings_dict
            with psycopg.connect(
                host=s["HOST"], port=s["PORT"], user=s["USER"], dbname=s["NAME"], autocommit=True
            ) as other:
                other.execute("SELECT pg_terminate_backend(%s)", [killed[0]])
        return fetched

    monkeypatch.setattr(processing, "_fetch", fetch_then_lose_the_connection)

    event = run(event)
    assert (event.status, event.attempts) == (Status.FAILED, 1)
    assert event.retry_at is not None and "retrying in 30 s" in event.error

    WebhookEvent.objects.filter(pk=event.pk).update(retry_at=timezone.now())
    event = run(event)
    assert (event.status, event.attempts) == (Status.PROCESSED, 2)
    assert StageChange.objects.filter(account=hooked).count() == 1


# -- 6. Kommo's block --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_events_met_by_kommos_block_are_held_not_failed_and_go_on_when_the_breaker_closes(
    web, hooked, kommo, enqueued, django_capture_on_commit_callbacks
) -> None:
    kommo.lead(40_000_001, status_id=TO_STAGE, pipeline_id=PIPELINE)
    kommo.lead(40_000_002, status_id=TO_STAGE, pipeline_id=PIPELINE)
    first = deliver(web, hooked, status_body(40_000_001, account=hooked))
    kommo.blocked = True

    event = run(first)

    assert (event.status, event.attempts, event.retry_at) == (Status.RECEIVED, 0, None)
    assert "held while Kommo blocks the account" in event.error
    hooked.refresh_from_db()
    assert hooked.blocked_since is not None

    second = deliver(web, hooked, status_body(40_000_002, account=hooked))  # arrives while blocked
    calls = len(kommo.calls)
    run(second)
    assert WebhookEvent.objects.get(pk=second.pk).status == Status.RECEIVED
    assert len(kommo.calls) == calls  # no call while the breaker is open
    assert webhook_events_sweep(older_than=dt.timedelta(0)) == []  # held on purpose: not re-queued
    assert kommo_webhook_problems() == {"failed": 0, "dead": 0}

    kommo.blocked = False
    sent = len(enqueued)
    with django_capture_on_commit_callbacks(execute=True):
        assert account_unblock(account=hooked)  # the admin's "reset circuit breaker"
    assert enqueued[sent:] == [(first.pk, None)]

    run(first)
    assert [WebhookEvent.objects.get(pk=e.pk).status for e in (first, second)] == [Status.PROCESSED] * 2
    assert WebhookEvent.objects.get(pk=first.pk).attempts == 1
    assert StageChange.objects.filter(account=hooked).count() == 2


# -- real worker processes ---------------------------------------------------------------------------------

FORM = "application/x-www-form-urlencoded"


def live_processes(test: Any) -> Any:
    for mark in (pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker, pytest.mark.sandbox):
        test = mark(test)
    return test


def statuses(account: KommoAccount) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in WebhookEvent.objects.filter(account=account).values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


@live_processes
def test_with_a_real_worker_a_poison_body_in_a_batch_of_twenty_genuine_deliveries_fails_alone(
    webhook_portal, webhook_sandbox, start_worker
) -> None:
    account = connect(webhook_sandbox)
    chosen = open_leads_with_a_next_stage(webhook_sandbox, 20)
    for lead, target in chosen:  # Kommo delivers each move to the portal; no worker is running yet
        sandbox_api(webhook_sandbox, "PATCH", "/api/v4/leads", [{"id": lead["id"], "status_id": target}])
    wait_for(
        lambda: WebhookEvent.objects.filter(account=account).count() == 20,
        timeout=30,
        message="the 20 deliveries to be stored",
    )
    answer = requests.post(account.webhook_url, data=POISON, timeout=10, headers={"Content-Type": FORM})
    assert answer.status_code == 200
    poison = WebhookEvent.objects.get(account=account, events="leads[add]")

    start_worker()
    wait_for(
        lambda: (
            not WebhookEvent.objects.filter(
                account=account, status__in=[Status.RECEIVED, Status.PROCESSING]
            ).exists()
        ),
        timeout=60,
        message="the batch to be processed",
    )

    assert statuses(account) == {Status.PROCESSED: 20, Status.FAILED: 1}
    poison.refresh_from_db()
    assert poison.status == Status.FAILED and "WebhookParseError" in poison.traceback
    for lead, target in chosen:
        assert moves_of(account, lead["id"]) == [(lead["status_id"], target, StageChange.Source.WEBHOOK)]


def block_the_sandbox(server: Any) -> None:
    """Makes the sandbox block the account the way Kommo does: 429s past the threshold, then the 403 page."""
    sandbox_admin(
        server, "PUT", "/_sandbox/rate-limit", {"enabled": True, "per_token_rps": 1, "block_threshold": 0}
    )
    token = server.credentials["long_lived_token"]
    for _ in range(5):
        requests.get(
            f"{server.base_url}/api/v4/account", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
    assert sandbox_admin(server, "GET", "/_sandbox/rate-limit")["blocked"]


@live_processes
def test_with_a_real_worker_events_held_by_kommos_block_are_processed_at_once_when_it_is_lifted(
    webhook_portal, webhook_sandbox, start_worker
) -> None:
    start_worker()
    account = connect(webhook_sandbox)
    chosen = open_leads_with_a_next_stage(webhook_sandbox, 3)
    block_the_sandbox(webhook_sandbox)

    for lead, target in chosen:  # Kommo's board still works and still delivers webhooks
        moved = requests.post(
            f"{webhook_sandbox.base_url}/board/leads/{lead['id']}/move/",
            data={"status_id": str(target)},
            allow_redirects=False,
            timeout=10,
        )
        assert moved.status_code == 303
    wait_for(
        lambda: (
            WebhookEvent.objects.filter(account=account).count() == 3
            and KommoAccount.objects.get(pk=account.pk).blocked_since is not None
            and statuses(account) == {Status.RECEIVED: 3}
        ),
        timeout=60,
        message="the events to be held by the open breaker",
    )
    time.sleep(2)  # nothing fails meanwhile
    assert statuses(account) == {Status.RECEIVED: 3}

    sandbox_admin(webhook_sandbox, "POST", "/_sandbox/unblock")  # Kommo's support lifts the block
    sandbox_admin(webhook_sandbox, "PUT", "/_sandbox/rate-limit", {"enabled": False})
    lifted = time.monotonic()
    assert account_unblock(account=KommoAccount.objects.get(pk=account.pk))  # the admin resets the breaker

    wait_for(
        lambda: statuses(account) == {Status.PROCESSED: 3}, timeout=30, message="the held events to go on"
    )
    took = time.monotonic() - lifted
    assert took < 15, f"held events processed {took:.1f} s after the breaker closed"
    for lead, target in chosen:
        assert moves_of(account, lead["id"]) == [(lead["status_id"], target, StageChange.Source.WEBHOOK)]


# -- 11. a worker killed with SIGKILL ------------------------------------------------------------------------

TASK_LINE = re.compile(r"Task apps\.kommo\.tasks\.webhook_process\[([0-9a-f-]+)\] (received|succeeded)")


def running_webhook_tasks(worker: CeleryWorker) -> set[str]:
    """The webhook tasks ``worker`` has started and not finished, from its log."""
    seen: dict[str, set[str]] = {"received": set(), "succeeded": set()}
    for task_id, what in TASK_LINE.findall(worker.log()):
        seen[what].add(task_id)
    return seen["received"] - seen["succeeded"]


@live_processes
def test_after_a_worker_is_killed_its_events_are_processed_within_a_minute_without_double_effects(
    webhook_portal, webhook_sandbox, start_worker, start_beat
) -> None:
    """Production timings: the broker gives an unacknowledged task back only after an hour, so what brings
    the killed worker's events back is its claims' heartbeat stopping and beat's sweeper (every 15 s). Two
    workers run, as in production; the one holding a batch is killed, and the time is counted from then."""
    hour = {"CELERY_VISIBILITY_TIMEOUT": "3600"}
    workers = [start_worker(extra_env=hour), start_worker(extra_env=hour)]
    start_beat(extra_env=hour)
    account = connect(webhook_sandbox)
    sandbox_api(webhook_sandbox, "DELETE", "/api/v4/webhooks", {"destination": account.webhook_url})
    chosen = open_leads_with_a_next_stage(webhook_sandbox, 12)
    for lead, target in chosen:  # moved on Kommo, not yet delivered
        sandbox_api(webhook_sandbox, "PATCH", "/api/v4/leads", [{"id": lead["id"], "status_id": target}])
    moved = {
        lead["id"]: lead
        for lead in sandbox_api(webhook_sandbox, "GET", "/api/v4/leads?limit=250")["_embedded"]["leads"]
    }
    sandbox_admin(webhook_sandbox, "PUT", "/_sandbox/faults", {"latency_ms": 20_000})  # Kommo answers slowly

    for lead, target in chosen:  # the deliveries Kommo makes for these moves
        body = encode_form(
            {
                "leads": {
                    "status": [
                        {
                            "id": lead["id"],
                            "status_id": target,
                            "pipeline_id": lead["pipeline_id"],
                            "old_status_id": lead["status_id"],
                            "last_modified": moved[lead["id"]]["updated_at"],
                        }
                    ]
                },
                "account": {"id": account.kommo_id, "subdomain": account.subdomain},
            }
        )
        answer = requests.post(account.webhook_url, data=body, headers={"Content-Type": FORM}, timeout=10)
        assert answer.status_code == 200
    holder = wait_for(
        lambda: (
            WebhookEvent.objects.filter(account=account, status=Status.PROCESSING).exists()
            and next((worker for worker in workers if running_webhook_tasks(worker)), None)
        ),
        timeout=60,
        message="a batch to be in flight",
    )

    holder.kill()  # SIGKILL to the worker and its pool: no ack, no cleanup, claims left behind
    killed = time.monotonic()
    held = WebhookEvent.objects.filter(account=account, status=Status.PROCESSING).count()
    assert held
    sandbox_admin(webhook_sandbox, "PUT", "/_sandbox/faults", {"latency_ms": 0})

    wait_for(
        lambda: statuses(account) == {Status.PROCESSED: len(chosen)},
        timeout=120,
        interval=0.2,
        message="every event to be processed",
    )
    took = time.monotonic() - killed
    assert took < 60, f"the killed worker's events were processed {took:.1f} s after the kill"
    for lead, target in chosen:
        assert moves_of(account, lead["id"]) == [(lead["status_id"], target, StageChange.Source.WEBHOOK)]
        assert Lead.objects.get(account=account, kommo_id=lead["id"]).status_kommo_id == target
    assert StageChange.objects.filter(account=account).count() == len(chosen)
    print(f"{held} claimed events of the killed worker; all processed {took:.1f} s after the kill")
