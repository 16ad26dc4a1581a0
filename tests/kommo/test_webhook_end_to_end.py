"""Webhooks end to end: the Kommo sandbox delivers to a live portal, a real Celery worker on Redis processes
on PostgreSQL; and a worker killed with SIGKILL mid-batch loses nothing and doubles nothing."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import requests

from apps.kommo.models import KommoAccount, Lead, StageChange, WebhookEvent
from apps.kommo.webhooks.processing import webhook_events_sweep
from kommo_sandbox.server import SandboxServer
from tests.kommo.sandbox_support import account_subscribed, sandbox_admin, sandbox_api
from tests.support.marks import REAL_SERVERS
from tests.support.services import wait_for

pytestmark = REAL_SERVERS
Status = WebhookEvent.Status


def connect(server: SandboxServer) -> KommoAccount:
    """The sandbox's account in the portal, subscribed to stage changes at its webhook URL."""
    return account_subscribed(server)


def open_leads_with_a_next_stage(server: SandboxServer, count: int) -> list[tuple[dict[str, Any], int]]:
    """``count`` open deals, each with the regular stage after its own."""
    pipelines = sandbox_api(server, "GET", "/api/v4/leads/pipelines")["_embedded"]["pipelines"]
    following: dict[int, int] = {}
    for pipeline in pipelines:
        stages = sorted(
            (s for s in pipeline["_embedded"]["statuses"] if s["id"] not in (142, 143) and s["type"] == 0),
            key=lambda s: s["sort"],
        )
        following.update((a["id"], b["id"]) for a, b in itertools.pairwise(stages))
    leads = sandbox_api(server, "GET", "/api/v4/leads?limit=250")["_embedded"]["leads"]
    chosen = [(lead, following[lead["status_id"]]) for lead in leads if lead["status_id"] in following]
    assert len(chosen) >= count, "the demo seed has too few open deals"
    return chosen[:count]


def moves_of(account: KommoAccount, lead_id: int) -> list[tuple[int | None, int, str]]:
    return list(
        StageChange.objects.filter(account=account, lead__kommo_id=lead_id).values_list(
            "from_status_kommo_id", "to_status_kommo_id", "source"
        )
    )


def test_a_deal_moved_on_the_sandbox_board_shows_its_new_stage_and_the_move_in_the_portal(
    webhook_portal, webhook_sandbox, start_worker
) -> None:
    start_worker()
    account = connect(webhook_sandbox)
    [(lead, target)] = open_leads_with_a_next_stage(webhook_sandbox, 1)

    moved = requests.post(
        f"{webhook_sandbox.base_url}/board/leads/{lead['id']}/move/",
        data={"status_id": str(target)},
        allow_redirects=False,
        timeout=10,
    )
    assert moved.status_code == 303

    wait_for(lambda: moves_of(account, lead["id"]), timeout=30, message="the move to reach the portal")
    assert moves_of(account, lead["id"]) == [(lead["status_id"], target, StageChange.Source.WEBHOOK)]
    assert Lead.objects.get(account=account, kommo_id=lead["id"]).status_kommo_id == target
    event = WebhookEvent.objects.get(account=account)
    assert (event.status, event.events, event.attempts) == (Status.PROCESSED, "leads[status]", 1)
    assert event.headers["user-agent"] == "amoCRM-Webhooks/3.0"
    deliveries = sandbox_admin(webhook_sandbox, "GET", "/_sandbox/webhook-deliveries")["deliveries"]
    assert [(d["outcome"], d["status_code"]) for d in deliveries if d["outcome"] != "skipped"] == [
        ("delivered", 200)
    ]


def test_events_in_flight_when_the_worker_is_killed_are_processed_once_after_a_restart(
    webhook_portal, webhook_sandbox, start_worker
) -> None:
    first = start_worker()
    account = connect(webhook_sandbox)
    chosen = open_leads_with_a_next_stage(webhook_sandbox, 12)
    sandbox_admin(webhook_sandbox, "PUT", "/_sandbox/faults", {"latency_ms": 1500})  # Kommo answers slowly

    for lead, target in chosen:
        sandbox_api(webhook_sandbox, "PATCH", "/api/v4/leads", [{"id": lead["id"], "status_id": target}])
    wait_for(
        lambda: WebhookEvent.objects.filter(account=account).count() == len(chosen),
        timeout=30,
        message="every delivery to be stored",
    )
    wait_for(
        lambda: WebhookEvent.objects.filter(account=account, status=Status.PROCESSING).exists(),
        timeout=30,
        message="a batch to be in flight",
    )

    first.kill()  # SIGKILL to the worker and its pool: no ack, no cleanup, claims left behind
    assert WebhookEvent.objects.filter(account=account).exclude(status=Status.PROCESSED).exists()
    sandbox_admin(webhook_sandbox, "PUT", "/_sandbox/faults", {"latency_ms": 0})
    start_worker()
    webhook_events_sweep(older_than=dt.timedelta(0))  # what the beat sweeper does every minute

    wait_for(
        lambda: not WebhookEvent.objects.filter(account=account).exclude(status=Status.PROCESSED).exists(),
        timeout=60,
        message="every event to be processed",
    )
    for lead, target in chosen:
        assert moves_of(account, lead["id"]) == [(lead["status_id"], target, StageChange.Source.WEBHOOK)]
        assert Lead.objects.get(account=account, kommo_id=lead["id"]).status_kommo_id == target
    assert StageChange.objects.filter(account=account).count() == len(chosen)
