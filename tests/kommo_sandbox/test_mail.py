"""An e-mail on a deal or a contact in the sandbox (``POST /_sandbox/mail``): the mail note, the note
webhook, the Digital Pipeline ``mail_in`` hook of the deal's stage, and no events entry (docs/sandbox.md,
"E-mails")."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qsl

import pytest

from kommo_sandbox.server import SandboxServer
from tests.kommo_sandbox.conftest import Client
from tests.kommo_sandbox.webhook_doubles import Receiver


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver, Receiver]]:
    general, mail_hook, status_hook = Receiver(), Receiver(), Receiver()
    yield general, mail_hook, status_hook
    for receiver in (general, mail_hook, status_hook):
        receiver.close()


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    server = SandboxServer(host="127.0.0.1", port=0, seed="demo").start()
    admin = Client(server.base_url, server.credentials["admin_token"])
    assert admin.put("/_sandbox/rate-limit", {"enabled": False}).status_code == 200
    yield server
    server.stop()


def test_an_email_on_a_deal_is_a_mail_note_a_note_webhook_and_the_stages_mail_in_hook(server, receivers):
    general, mail_hook, status_hook = receivers
    api = Client(server.base_url, server.credentials["long_lived_token"])
    admin = Client(server.base_url, server.credentials["admin_token"])
    lead = api.get("/api/v4/leads", params={"limit": 1}).json()["_embedded"]["leads"][0]
    stage = {"pipeline_id": lead["pipeline_id"], "status_id": lead["status_id"]}
    assert api.post("/api/v4/webhooks", {"destination": general.url, "settings": ["note_lead"]}).ok
    assert admin.put("/_sandbox/dp-webhooks", {**stage, "event": "mail_in", "url": mail_hook.url}).ok
    assert admin.put("/_sandbox/dp-webhooks", {**stage, "url": status_hook.url}).ok
    events_before = api.get(
        "/api/v4/events", params={"filter[entity_id]": lead["id"], "filter[entity]": "lead"}
    )

    answer = admin.post(
        "/_sandbox/mail", {"lead_id": lead["id"], "subject": "Contract draft", "created_at": 1_790_000_000}
    )

    assert answer.status_code == 201
    note = answer.json()
    assert (note["note_type"], note["entity_id"], note["created_at"]) == (
        "amomail_message",
        lead["id"],
        1_790_000_000,
    )
    assert note["params"]["income"] is True and note["params"]["subject"] == "Contract draft"
    listed = api.get(
        "/api/v4/leads/notes",
        params={"filter[note_type]": "amomail_message", "filter[updated_at][from]": 1_790_000_000},
    ).json()["_embedded"]["notes"]
    assert [item["id"] for item in listed] == [note["id"]]

    [hook] = mail_hook.wait_for(1)
    assert list(parse_qsl(hook.body.decode())) == [
        ("leads[mail_in][0][id]", str(lead["id"])),
        ("leads[mail_in][0][status_id]", str(lead["status_id"])),
        ("leads[mail_in][0][pipeline_id]", str(lead["pipeline_id"])),
        ("account[id]", str(server.credentials["account_id"])),
        ("account[subdomain]", server.credentials["subdomain"]),
    ]
    [delivery] = general.wait_for(1)
    pairs = dict(parse_qsl(delivery.body.decode()))
    assert pairs["leads[note][0][note][note_type]"] == "amomail_message"
    assert pairs["leads[note][0][note][element_id]"] == str(lead["id"])
    assert pairs["leads[note][0][note][created_at]"] == "1790000000"
    assert server.sender.wait_idle(5)
    assert status_hook.requests == []  # the stage's move hook does not listen for e-mails
    events_after = api.get(
        "/api/v4/events", params={"filter[entity_id]": lead["id"], "filter[entity]": "lead"}
    )
    assert events_after.content == events_before.content  # Kommo's events log has no e-mail type


def test_an_email_sent_or_on_a_contact_fires_no_digital_pipeline_hook(server, receivers):
    general, mail_hook, _ = receivers
    api = Client(server.base_url, server.credentials["long_lived_token"])
    admin = Client(server.base_url, server.credentials["admin_token"])
    lead = api.get("/api/v4/leads", params={"limit": 1, "with": "contacts"}).json()["_embedded"]["leads"][0]
    contact_id = lead["_embedded"]["contacts"][0]["id"]
    stage = {"pipeline_id": lead["pipeline_id"], "status_id": lead["status_id"], "event": "mail_in"}
    assert api.post("/api/v4/webhooks", {"destination": general.url, "settings": ["note_contact"]}).ok
    assert admin.put("/_sandbox/dp-webhooks", {**stage, "url": mail_hook.url}).json()["event"] == "mail_in"

    sent = admin.post("/_sandbox/mail", {"lead_id": lead["id"], "income": False})
    received = admin.post("/_sandbox/mail", {"contact_id": contact_id})

    assert sent.json()["params"]["income"] is False and sent.json()["created_by"] != 0
    [delivery] = general.wait_for(1)
    assert dict(parse_qsl(delivery.body.decode()))["contacts[note][0][note][element_id]"] == str(contact_id)
    assert received.json()["entity_id"] == contact_id
    assert server.sender.wait_idle(5)
    assert mail_hook.requests == []
    rows = admin.get("/_sandbox/dp-webhooks").json()["dp_webhooks"]
    assert {"event": "mail_in", "urls": [mail_hook.url]}.items() <= rows[0].items()


def test_the_mail_control_refuses_what_it_cannot_place_and_the_api_cannot_create_a_mail_note(server):
    api = Client(server.base_url, server.credentials["long_lived_token"])
    admin = Client(server.base_url, server.credentials["admin_token"])
    lead = api.get("/api/v4/leads", params={"limit": 1}).json()["_embedded"]["leads"][0]

    assert admin.post("/_sandbox/mail", {}).status_code == 400
    assert admin.post("/_sandbox/mail", {"lead_id": lead["id"], "contact_id": 1}).status_code == 400
    assert admin.post("/_sandbox/mail", {"lead_id": 1}).status_code == 404
    assert admin.post("/_sandbox/mail", {"lead_id": lead["id"], "income": "yes"}).status_code == 400
    assert (
        admin.put(
            "/_sandbox/dp-webhooks",
            {
                "pipeline_id": lead["pipeline_id"],
                "status_id": lead["status_id"],
                "event": "x",
                "url": "http://a",
            },
        ).status_code
        == 400
    )
    refused = api.post(
        "/api/v4/leads/notes",
        [{"entity_id": lead["id"], "note_type": "amomail_message", "params": {"subject": "x"}}],
    )
    assert refused.status_code == 400
