"""``manage.py kommo_replay``: a recorded delivery posted to a running portal, byte for byte."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from apps.kommo.models import WebhookEvent
from tests.kommo.webhook_support import FOLDER, account_for, recording

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def portal(transactional_db, live_server, settings):
    """The portal served over HTTP (the database first: the server thread connects to it as it starts)."""
    settings.KOMMO_PUBLIC_URL = live_server.url
    return live_server


def test_a_raw_body_is_replayed_byte_for_byte_with_kommos_headers(portal, capsys) -> None:
    rec = recording("leads-status.form.txt")
    account = account_for(rec)

    call_command("kommo_replay", str(FOLDER / "leads-status.form.txt"), "--account", str(account.pk))

    event = WebhookEvent.objects.get()
    assert bytes(event.body) == rec.body
    assert event.headers["user-agent"] == "amoCRM-Webhooks/3.0"
    assert event.request_id
    assert "-> 200" in capsys.readouterr().out


def test_a_curl_capture_is_replayed_as_it_was_sent(portal) -> None:
    account = account_for(recording("contacts-add.curl.txt"))

    call_command("kommo_replay", str(FOLDER / "contacts-add.curl.txt"), "--url", account.webhook_url)

    event = WebhookEvent.objects.get()
    assert len(bytes(event.body)) == 753  # the capture's content-length
    assert event.request_id == "ac0999fe-a56c-434d-b7ba-8cb676f02e26"
    assert event.status == WebhookEvent.Status.RECEIVED


def test_a_documentation_rendering_gets_the_target_accounts_block(portal) -> None:
    account_for(recording("leads-status.form.txt"))

    call_command("kommo_replay", str(FOLDER / "leads-add.doc.json"))

    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.RECEIVED
    assert bytes(event.body).startswith(b"account%5Bsubdomain%5D=irestoremoldova&account%5Bid%5D=16503244&")


def test_a_wrong_token_is_reported(portal) -> None:
    account_for(recording("leads-status.form.txt"))

    with pytest.raises(CommandError, match="404"):
        call_command(
            "kommo_replay", str(FOLDER / "leads-status.form.txt"), "--url", f"{portal.url}/webhooks/kommo/x/"
        )
