"""Tokens: encrypted at rest, refreshed ahead of expiry and once on a 401, single-flight across workers."""

import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection

from apps.kommo.client import KommoClient
from apps.kommo.exceptions import KommoAuthError
from apps.kommo.models import KommoAccount
from apps.kommo.ratelimit import FileSlotStore, RateLimiter
from tests.factories import KommoAccountFactory
from tests.kommo.conftest import LONG_LIVED_TOKEN, RECORDED_BASE_URL
from tests.kommo.payloads import payload

URL = RECORDED_BASE_URL


def new_pair(access: str, refresh: str) -> dict:
    return {"token_type": "Bearer", "expires_in": 86400, "access_token": access, "refresh_token": refresh}


def test_tokens_and_the_client_secret_are_not_stored_in_plain_text(oauth_account):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT access_token, refresh_token, client_secret FROM kommo_kommoaccount WHERE id = %s",
            [oauth_account.pk],
        )
        stored = cursor.fetchone()

    assert all(stored)
    for column, plain in zip(
        stored,
        ["old-access-token-aaaaaaaa", "old-refresh-token-bbbbbbbb", "client-secret-value"],
        strict=True,
    ):
        assert plain not in column
    fresh = KommoAccount.objects.get(pk=oauth_account.pk)
    assert fresh.access_token == "old-access-token-aaaaaaaa"
    assert fresh.client_secret == "client-secret-value"


def test_it_refreshes_a_token_that_expires_within_the_margin_before_calling(oauth_account, limiter, api):
    oauth_account.token_expires_at = dt.datetime.now(tz=dt.UTC) + dt.timedelta(minutes=5)
    oauth_account.save()
    api.post(f"{URL}/oauth2/access_token", json=new_pair("new-access", "new-refresh"))
    api.get(f"{URL}/api/v4/account", json=payload("account.json"))

    KommoClient(oauth_account, limiter=limiter).account_get()

    sent = json.loads(api.calls[0].request.body)
    assert sent == {
        "client_id": "client-id",
        "client_secret": "client-secret-value",
        "grant_type": "refresh_token",
        "refresh_token": "old-refresh-token-bbbbbbbb",
        "redirect_uri": "https://portal.example.com/kommo/oauth/callback/",
    }
    assert api.calls[1].request.headers["Authorization"] == "Bearer new-access"
    stored = KommoAccount.objects.get(pk=oauth_account.pk)
    assert (stored.access_token, stored.refresh_token) == ("new-access", "new-refresh")
    assert stored.token_expires_at > dt.datetime.now(tz=dt.UTC) + dt.timedelta(hours=23)


def test_a_401_triggers_one_refresh_and_one_retry(oauth_account, limiter, api):
    api.get(f"{URL}/api/v4/account", status=401, json=payload("error-401.json"))
    api.post(f"{URL}/oauth2/access_token", json=new_pair("new-access", "new-refresh"))
    api.get(f"{URL}/api/v4/account", json=payload("account.json"))

    assert KommoClient(oauth_account, limiter=limiter).account_get().id == 123123123
    assert [call.request.method for call in api.calls] == ["GET", "POST", "GET"]


def test_a_second_401_after_the_refresh_is_recorded_as_an_auth_error(oauth_account, limiter, api):
    api.get(f"{URL}/api/v4/account", status=401, json=payload("error-401.json"))
    api.post(f"{URL}/oauth2/access_token", json=new_pair("new-access", "new-refresh"))

    with pytest.raises(KommoAuthError):
        KommoClient(oauth_account, limiter=limiter).account_get()

    assert len(api.calls) == 3
    stored = KommoAccount.objects.get(pk=oauth_account.pk)
    assert "Invalid user name or password" in stored.auth_error and stored.auth_error_at is not None


def test_a_failed_refresh_is_recorded_on_the_account(oauth_account, limiter, api):
    oauth_account.token_expires_at = dt.datetime.now(tz=dt.UTC) - dt.timedelta(minutes=1)
    oauth_account.save()
    api.post(f"{URL}/oauth2/access_token", status=401, json=payload("error-oauth-token-revoked.json"))

    with pytest.raises(KommoAuthError):
        KommoClient(oauth_account, limiter=limiter).account_get()

    stored = KommoAccount.objects.get(pk=oauth_account.pk)
    assert stored.auth_error.startswith("token refresh failed") and "revoked" in stored.auth_error
    assert stored.refresh_token == "old-refresh-token-bbbbbbbb"


def test_a_rejected_long_lived_token_is_not_refreshed_but_marks_the_account(client, api):
    api.get(f"{URL}/api/v4/account", status=401, json=payload("error-401.json"))

    with pytest.raises(KommoAuthError):
        client.account_get()

    assert len(api.calls) == 1
    recorded = KommoAccount.objects.get(pk=client.account.pk).auth_error
    assert recorded.startswith("Kommo refused the long-lived token (expired or revoked): set a new one")


def test_a_successful_call_clears_a_recorded_auth_error(client, api):
    KommoAccount.objects.filter(pk=client.account.pk).update(auth_error="old failure")
    client.account.auth_error = "old failure"
    api.get(f"{URL}/api/v4/account", json=payload("account.json"))

    client.account_get()

    assert KommoAccount.objects.get(pk=client.account.pk).auth_error == ""


class _TokenServer(BaseHTTPRequestHandler):
    """A Kommo stand-in over real HTTP: a 401 for the old token, and a slow token endpoint that counts."""

    refreshes = 0
    lock = threading.Lock()

    def log_message(self, format, *args):
        pass

    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            type(self).refreshes += 1
            number = type(self).refreshes
        time.sleep(0.3)
        self._answer(200, new_pair(f"access-{number}", f"refresh-{number}"))

    def do_GET(self):
        if self.headers["Authorization"] == "Bearer old-access-token-aaaaaaaa":
            self._answer(401, payload("error-401.json"))
        else:
            self._answer(200, payload("account.json"))


@pytest.mark.postgres
def test_it_refreshes_the_token_once_when_several_workers_hit_401_together(transactional_db, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _TokenServer.refreshes = 0
    account = KommoAccountFactory(
        name="Concurrent",
        base_url=f"http://127.0.0.1:{server.server_address[1]}",
        auth_kind=KommoAccount.AuthKind.OAUTH,
        client_id="client-id",
        client_secret="secret",
        access_token="old-access-token-aaaaaaaa",
        refresh_token="old-refresh-token-bbbbbbbb",
        token_expires_at=dt.datetime.now(tz=dt.UTC) + dt.timedelta(hours=20),
        rate_limit_per_second=1000,
    )
    limiter = RateLimiter(FileSlotStore(tmp_path))
    barrier = threading.Barrier(6)
    outcomes: list[object] = []

    def worker():
        from django.db import connections

        try:
            client = KommoClient(KommoAccount.objects.get(pk=account.pk), limiter=limiter)
            barrier.wait()
            outcomes.append(client.account_get().id)
        except Exception as exc:
            outcomes.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    server.shutdown()

    assert outcomes == [123123123] * 6
    assert _TokenServer.refreshes == 1
    stored = KommoAccount.objects.get(pk=account.pk)
    assert (stored.access_token, stored.refresh_token) == ("access-1", "refresh-1")
    assert LONG_LIVED_TOKEN not in stored.access_token


@pytest.mark.postgres
def test_a_webhook_arriving_during_a_token_refresh_is_stored_without_waiting_for_kommo(
    transactional_db, settings, monkeypatch
):
    from django.db import connections
    from django.test import Client

    from apps.kommo.exceptions import KommoServerError
    from apps.kommo.models import WebhookEvent
    from apps.kommo.services.accounts import account_token_refresh

    settings.DATABASE_REQUEST_STATEMENT_TIMEOUT_MS = 500
    account = KommoAccountFactory(
        name="Refreshing",
        base_url=RECORDED_BASE_URL,
        auth_kind=KommoAccount.AuthKind.OAUTH,
        client_id="client-id",
        client_secret="secret",
        access_token="old-access-token-aaaaaaaa",
        refresh_token="old-refresh-token-bbbbbbbb",
        token_expires_at=dt.datetime.now(tz=dt.UTC) - dt.timedelta(minutes=1),
        rate_limit_per_second=1000,
    )
    asked, answer = threading.Event(), threading.Event()

    def slow_kommo(self, body):  # the refresh holds its lock while Kommo takes its time
        asked.set()
        answer.wait(20)
        raise KommoServerError("Kommo answered 503", status=503)

    monkeypatch.setattr(KommoClient, "oauth_token", slow_kommo)

    def refresh() -> None:
        try:
            with pytest.raises(KommoServerError):  # the refresh fails, recorded on the account
                account_token_refresh(account=account, stale_access_token="old-access-token-aaaaaaaa")
        finally:
            connections.close_all()

    refreshing = threading.Thread(target=refresh)
    refreshing.start()
    try:
        assert asked.wait(20)
        response = Client().post(
            f"/webhooks/kommo/{account.webhook_token}/",
            b"leads[status][0][id]=1",
            content_type="application/x-www-form-urlencoded",
        )
    finally:
        answer.set()
        refreshing.join(30)
        with connection.cursor() as cursor:  # the request path's timeouts stay on this connection
            cursor.execute("RESET statement_timeout")
            cursor.execute("RESET lock_timeout")

    assert response.status_code == 200  # not 503 after the lock timeout, nor a wait for Kommo
    assert WebhookEvent.objects.filter(account=account).count() == 1
