"""The sandbox end to end: a change made through its API reaches a subscriber in Kommo's wire format."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qsl

import pytest

from kommo_sandbox.server import SandboxServer
from tests.kommo_sandbox.conftest import Client
from tests.kommo_sandbox.webhook_doubles import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    server = SandboxServer(host="127.0.0.1", port=0, seed="demo").start()
    yield server
    server.stop()


def test_a_stage_move_through_the_api_is_delivered_as_a_form_encoded_status_webhook(server, receiver):
    api = Client(server.base_url, server.credentials["long_lived_token"])
    admin = Client(server.base_url, server.credentials["admin_token"])
    assert api.post("/api/v4/webhooks", {"destination": receiver.url, "settings": ["status_lead"]}).ok
    lead = api.get("/api/v4/leads", params={"limit": 1}).json()["_embedded"]["leads"][0]
    statuses = api.get(f"/api/v4/leads/pipelines/{lead['pipeline_id']}").json()["_embedded"]["statuses"]
    target = next(
        s["id"] for s in statuses if s["id"] not in (lead["status_id"], 142, 143) and s["type"] == 0
    )

    assert api.patch("/api/v4/leads", [{"id": lead["id"], "status_id": target}]).ok

    [delivery] = receiver.wait_for(1)
    assert delivery.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert delivery.headers["User-Agent"] == "amoCRM-Webhooks/3.0"
    pairs = dict(parse_qsl(delivery.body.decode()))
    assert pairs["leads[status][0][id]"] == str(lead["id"])
    assert pairs["leads[status][0][status_id]"] == str(target)
    assert pairs["leads[status][0][old_status_id]"] == str(lead["status_id"])
    assert pairs["account[id]"] == str(server.credentials["account_id"])
    assert b"leads%5Bstatus%5D%5B0%5D%5Bid%5D=" in delivery.body  # bracket keys percent-encoded, as sent

    assert server.sender.wait_idle(5)  # an attempt is logged once its answer is in: after the receiver
    log = admin.get("/_sandbox/webhook-deliveries").json()["deliveries"]
    assert [(entry["outcome"], entry["status_code"]) for entry in log] == [("delivered", 200)]


def test_nothing_is_sent_for_events_the_subscription_did_not_ask_for(server, receiver):
    api = Client(server.base_url, server.credentials["long_lived_token"])
    assert api.post("/api/v4/webhooks", {"destination": receiver.url, "settings": ["add_contact"]}).ok
    lead = api.get("/api/v4/leads", params={"limit": 1}).json()["_embedded"]["leads"][0]

    assert api.patch("/api/v4/leads", [{"id": lead["id"], "price": lead["price"] + 1}]).ok
    assert api.post("/api/v4/contacts", [{"name": "Dana Ortiz"}]).ok

    [delivery] = receiver.wait_for(1)
    assert server.sender.wait_idle(5)
    assert "contacts[add][0][name]" in dict(parse_qsl(delivery.body.decode()))
    assert len(receiver.requests) == 1


def test_one_save_that_moves_and_reassigns_a_lead_sends_update_lead_once_per_change(server, receiver):
    """The sandbox's documented choice (docs/sandbox.md, "One save, two changes"): a stage move and a new
    responsible user in one PATCH are two changes; ``update_lead`` gets ``leads[update]`` for each."""
    api = Client(server.base_url, server.credentials["long_lived_token"])
    settings = ["update_lead", "status_lead", "responsible_lead"]
    assert api.post("/api/v4/webhooks", {"destination": receiver.url, "settings": settings}).ok
    lead = api.get("/api/v4/leads", params={"limit": 1}).json()["_embedded"]["leads"][0]
    statuses = api.get(f"/api/v4/leads/pipelines/{lead['pipeline_id']}").json()["_embedded"]["statuses"]
    target = next(
        s["id"] for s in statuses if s["id"] not in (lead["status_id"], 142, 143) and s["type"] == 0
    )
    users = api.get("/api/v4/users").json()["_embedded"]["users"]
    other = next(u["id"] for u in users if u["id"] != lead["responsible_user_id"])

    saved = api.patch(f"/api/v4/leads/{lead['id']}", {"status_id": target, "responsible_user_id": other})
    assert saved.ok

    receiver.wait_for(4)
    assert server.sender.wait_idle(5)
    sections = sorted(
        key.removesuffix("[0][id]")
        for request in receiver.requests
        for key, _ in parse_qsl(request.body.decode())
        if key.startswith("leads[") and key.count("[") == 3 and key.endswith("[0][id]")
    )
    assert sections == ["leads[responsible]", "leads[status]", "leads[update]", "leads[update]"]
