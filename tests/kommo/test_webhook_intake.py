"""The webhook endpoint: what is stored, what is answered, and that hostile input never gets a 5xx."""

from __future__ import annotations

import os

import pytest
import responses
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.kommo.models import KommoAccount, WebhookEvent
from apps.kommo.webhooks import intake
from tests.kommo.webhook_support import account_for, body_names, recording

pytestmark = pytest.mark.django_db
FORM = "application/x-www-form-urlencoded"
hostile = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sent: list[int] = []
    monkeypatch.setattr(
        intake, "webhook_event_enqueue", lambda *, event_id, countdown=None: sent.append(event_id)
    )
    return sent


@pytest.fixture
def hooked() -> KommoAccount:
    """The account the 2021 status capture belongs to."""
    return account_for(recording("leads-status.form.txt"))


@pytest.fixture
def web() -> Client:
    return Client()


def post(web, account_or_token, body: bytes, content_type: str = FORM, **headers: str):
    token = getattr(account_or_token, "webhook_token", account_or_token)
    return web.generic("POST", f"/webhooks/kommo/{token}/", body, content_type=content_type, **headers)


def test_a_delivery_is_stored_byte_for_byte_and_enqueued_after_commit(
    web, hooked, enqueued, django_capture_on_commit_callbacks
) -> None:
    rec = recording("leads-status.form.txt")

    with django_capture_on_commit_callbacks(execute=True):
        response = post(
            web,
            hooked,
            rec.body,
            HTTP_USER_AGENT="amoCRM-Webhooks/3.0",
            HTTP_X_AMOCRM_REQUESTID="4f7a0c1e-1111-4222-8333-944455556666",
            HTTP_COOKIE="sessionid=secret",
            REMOTE_ADDR="203.0.113.7",
        )

    assert response.status_code == 200
    [event] = WebhookEvent.objects.all()
    assert bytes(event.body) == rec.body
    assert event.account == hooked
    assert event.status == WebhookEvent.Status.RECEIVED
    assert (event.kind, event.events) == (WebhookEvent.Kind.GENERAL, "leads[status]")
    assert event.request_id == "4f7a0c1e-1111-4222-8333-944455556666"
    assert event.remote_addr == "203.0.113.7"
    assert event.headers["user-agent"] == "amoCRM-Webhooks/3.0"
    assert "cookie" not in event.headers
    assert enqueued == [event.pk]


def test_nothing_is_enqueued_before_the_row_is_committed(web, hooked, enqueued) -> None:
    with responses.RequestsMock():  # and no HTTP call to Kommo happens in the request
        response = post(web, hooked, recording("leads-status.form.txt").body)

    assert response.status_code == 200
    assert WebhookEvent.objects.count() == 1
    assert enqueued == []  # the test's transaction never commits


def test_a_digital_pipeline_hook_is_stored_as_such(web, enqueued) -> None:
    rec = recording("dp-leads-status.form.txt")
    account = account_for(rec)

    assert post(web, account, rec.body).status_code == 200
    assert WebhookEvent.objects.get().kind == WebhookEvent.Kind.DIGITAL_PIPELINE


def test_a_wrong_token_is_answered_404_and_nothing_is_stored(web, hooked) -> None:
    body = recording("leads-status.form.txt").body

    assert post(web, hooked.webhook_token[:-1] + "x", body).status_code == 404
    assert post(web, "", body).status_code == 404
    assert post(web, hooked.webhook_token + "x", body).status_code == 404
    assert WebhookEvent.objects.count() == 0


def test_a_token_of_a_new_account_works_at_once(web, hooked, enqueued) -> None:
    assert post(web, hooked, recording("leads-status.form.txt").body).status_code == 200
    other = account_for(recording("leads-add.curl.txt"))

    assert post(web, other, recording("leads-add.curl.txt").body).status_code == 200


def test_a_body_naming_another_account_is_stored_as_rejected_and_not_processed(
    web, hooked, enqueued, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = post(web, hooked, recording("leads-add.curl.txt").body)

    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.REJECTED
    assert "32427762" in event.error
    assert enqueued == []


def test_a_body_naming_another_subdomain_is_rejected(web, enqueued) -> None:
    rec = recording("leads-status.form.txt")
    account = account_for(rec, subdomain="someoneelse")

    post(web, account, rec.body)

    assert WebhookEvent.objects.get().status == WebhookEvent.Status.REJECTED


def test_an_unreadable_body_is_stored_as_failed_and_answered_200(
    web, hooked, enqueued, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = post(web, hooked, b"leads[status][0][%FF]=1")

    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.FAILED
    assert "UTF-8" in event.error
    assert bytes(event.body) == b"leads[status][0][%FF]=1"
    assert enqueued == []


def test_a_json_body_is_accepted(web, hooked, enqueued) -> None:
    body = (
        b'{"leads":{"status":[{"id":"1","status_id":"2","old_status_id":"3"}]},"account":{"id":"16503244"}}'
    )

    assert post(web, hooked, body, "application/json").status_code == 200
    event = WebhookEvent.objects.get()
    assert (event.status, event.events) == (WebhookEvent.Status.RECEIVED, "leads[status]")


def test_the_stored_row_names_every_column_of_the_model(web, hooked, enqueued, monkeypatch) -> None:
    """The request writes its row with one INSERT of its own: a field added to WebhookEvent must be in it."""
    written: list[dict] = []
    real = intake._insert_event
    monkeypatch.setattr(intake, "_insert_event", lambda row: written.append(row) or real(row))

    post(web, hooked, recording("leads-status.form.txt").body)

    columns = {f.attname for f in WebhookEvent._meta.concrete_fields if not f.primary_key}
    assert set(written[0]) == columns


@pytest.mark.postgres
def test_the_insert_writes_what_the_orm_would_and_is_prepared(hooked) -> None:
    from django.db import connection
    from django.utils import timezone

    row = {
        "account_id": hooked.id,
        "body": b"leads[status][0][id]=1\x00\xff",
        "content_type": FORM,
        "headers": {"user-agent": "amoCRM-Webhooks/3.0", "x-amocrm-requestid": "r-1"},
        "remote_addr": "2001:db8::7",
        "request_id": "r-1",
        "kind": WebhookEvent.Kind.DIGITAL_PIPELINE.value,
        "events": "leads[status]",
        "status": WebhookEvent.Status.REJECTED.value,
        "attempts": 0,
        "error": "the body names another account",
        "traceback": "",
        "received_at": timezone.now(),
        "claimed_at": None,
        "heartbeat_at": None,
        "retry_at": None,
        "processed_at": None,
    }
    fields = [f.attname for f in WebhookEvent._meta.concrete_fields if not f.primary_key]

    def stored(pk: int) -> dict:
        event = WebhookEvent.objects.get(pk=pk)
        values = {name: getattr(event, name) for name in fields}
        return {**values, "body": bytes(values["body"])}

    threshold = connection.settings_dict["OPTIONS"]["prepare_threshold"]
    ids = [intake._insert_event(row) for _ in range(threshold + 2)]  # run as it is, then prepared
    assert len(set(ids)) == threshold + 2
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        statements = [query for (query,) in cursor.fetchall()]
    assert sum(query.startswith('INSERT INTO "kommo_webhookevent"') for query in statements) == 1
    assert stored(ids[0]) == stored(ids[-1]) == stored(WebhookEvent.objects.create(**row).pk) == row


@pytest.mark.postgres
def test_bodies_are_compressed_with_lz4_where_postgresql_has_it() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
        (has_lz4,) = cursor.fetchone()
        cursor.execute(
            "SELECT attcompression FROM pg_attribute"
            " WHERE attrelid = 'kommo_webhookevent'::regclass AND attname = 'body'"
        )
        (method,) = cursor.fetchone()
    assert method == ("l" if has_lz4 else "")


def test_another_method_is_answered_405_in_json_whatever_is_accepted(web, hooked) -> None:
    response = web.get(f"/webhooks/kommo/{hooked.webhook_token}/", HTTP_ACCEPT="text/html")

    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": 'Method "GET" not allowed.'}
    assert WebhookEvent.objects.count() == 0


def test_a_body_over_the_limit_is_answered_413_and_not_stored(web, hooked, settings) -> None:
    settings.KOMMO_WEBHOOK_MAX_BODY_BYTES = 1000

    assert post(web, hooked, b"leads[add][0][id]=1&x=" + b"y" * 1000).status_code == 413
    assert post(web, hooked, b"x" * 1000).status_code == 200
    assert WebhookEvent.objects.count() == 1


def test_the_read_stops_at_the_limit_whatever_the_declared_length(rf, hooked, settings) -> None:
    from apps.kommo.webhooks.views import kommo_webhook

    settings.KOMMO_WEBHOOK_MAX_BODY_BYTES = 1000
    request = rf.generic("POST", "/", b"x" * 5000, content_type=FORM)
    request.META["CONTENT_LENGTH"] = "not a number"
    assert kommo_webhook(request, token=hooked.webhook_token).status_code == 413

    request = rf.generic("POST", "/", b"x" * 5000, content_type=FORM)
    request.META["CONTENT_LENGTH"] = "900"  # says less than the stream holds: the read itself is bounded
    assert kommo_webhook(request, token=hooked.webhook_token).status_code == 413
    assert WebhookEvent.objects.count() == 0


def test_the_request_never_calls_kommo_nor_parses_the_whole_body(web, hooked, enqueued, monkeypatch) -> None:
    from apps.kommo.webhooks import parser

    def refuse(*args, **kwargs):
        raise AssertionError("parsed in the request")

    monkeypatch.setattr(parser, "parse", refuse)
    monkeypatch.setattr(parser, "decode_form", refuse)
    with responses.RequestsMock():
        assert post(web, hooked, recording("leads-status.form.txt").body).status_code == 200


# -- hostile input --------------------------------------------------------------------------------------


def assert_no_5xx_and_stored_for_the_right_token(web, hooked, body: bytes, content_type: str) -> None:
    before = WebhookEvent.objects.count()
    wrong = post(web, "not-" + hooked.webhook_token, body, content_type)
    assert wrong.status_code == 404
    assert WebhookEvent.objects.count() == before
    right = post(web, hooked, body, content_type)
    assert right.status_code in (200, 413)
    if right.status_code == 200:
        assert WebhookEvent.objects.count() == before + 1
        assert bytes(WebhookEvent.objects.latest("id").body) == body


@hostile
@given(
    body=st.binary(max_size=2000), content_type=st.sampled_from([FORM, "application/json", "text/plain", ""])
)
def test_random_bytes_never_get_a_5xx(web, hooked, body: bytes, content_type: str) -> None:
    assert_no_5xx_and_stored_for_the_right_token(web, hooked, body, content_type)


@hostile
@given(data=st.data())
def test_truncated_recorded_bodies_never_get_a_5xx(web, hooked, data) -> None:
    body = recording(data.draw(st.sampled_from(body_names()))).body
    cut = data.draw(st.integers(0, len(body)))
    assert_no_5xx_and_stored_for_the_right_token(web, hooked, body[:cut], FORM)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b"a" + b"[b]" * 5000 + b"=1", FORM, id="keys-5000-deep"),
        pytest.param(
            b"&".join(b"leads[add][%d][id]=%d" % (i, i) for i in range(20_001)), FORM, id="20001-keys"
        ),
        pytest.param(b"&".join(b"s%d[a][0][id]=1" % i for i in range(5000)), FORM, id="5000-sections"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "application/json", id="json-deep"),
        pytest.param(b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "application/json", id="json-objects-deep"),
        pytest.param(b"\xff\xfe\x00\x01" * 100, FORM, id="non-utf8"),
        pytest.param(b"leads%5Badd%5D%5B0%5D%5Bname%5D=%E9t%E9", FORM, id="latin1-escapes"),
        pytest.param(
            b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--",
            "multipart/form-data; boundary=b",
            id="multipart",
        ),
        pytest.param(os.urandom(900_000), "application/octet-stream", id="random-900k"),
    ],
)
def test_hostile_bodies_never_get_a_5xx(web, hooked, body: bytes, content_type: str) -> None:
    assert_no_5xx_and_stored_for_the_right_token(web, hooked, body, content_type)
    event = WebhookEvent.objects.latest("id")
    assert event.status in (WebhookEvent.Status.FAILED, WebhookEvent.Status.RECEIVED)


def test_a_huge_body_is_refused_without_being_stored(web, hooked) -> None:
    assert post(web, hooked, b"x" * 1_048_577).status_code == 413
    assert post(web, "wrong", b"x" * 1_048_577).status_code == 404
    assert WebhookEvent.objects.count() == 0
