"""The webhook request under hostile input: NUL and lone surrogates in keys, chunked bodies. An
authenticated delivery is always stored and answered 2xx (unreadable ones kept as failed); never a 5xx."""

from __future__ import annotations

import io
import json

import pytest
from django.http.request import HttpHeaders
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.kommo.models import KommoAccount, WebhookEvent
from apps.kommo.webhooks import intake
from tests.kommo.webhook_support import account_for, recording

pytestmark = pytest.mark.django_db
FORM = "application/x-www-form-urlencoded"
Status = WebhookEvent.Status
hostile = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(autouse=True)
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sent: list[int] = []
    monkeypatch.setattr(
        intake, "webhook_event_enqueue", lambda *, event_id, countdown=None: sent.append(event_id)
    )
    return sent


@pytest.fixture
def hooked() -> KommoAccount:
    return account_for(recording("leads-status.form.txt"))


def post(account: KommoAccount, body: bytes, content_type: str = FORM, **extra: object):
    return Client().generic(
        "POST", f"/webhooks/kommo/{account.webhook_token}/", body, content_type=content_type, **extra
    )


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"leads%00[status][0][id]=1", FORM),
        (b"leads[sta%00tus][0][id]=1", FORM),
        (b"account[subdomain]=acme%00&leads[status][0][id]=1", FORM),
        (json.dumps({"leads\u0000": {"status": {"0": {"id": "1"}}}}).encode(), "application/json"),
        (b'{"leads": {"\\ud800": {"0": {"id": "1"}}}}', "application/json"),
        (
            b'{"account": {"subdomain": "\\udfff"}, "leads": {"status": {"0": {"id": "1"}}}}',
            "application/json",
        ),
    ],
    ids=[
        "nul-section",
        "nul-action",
        "nul-subdomain",
        "json-nul-key",
        "json-lone-surrogate",
        "json-surrogate-value",
    ],
)
def test_a_key_or_account_value_that_no_text_column_takes_is_kept_as_failed_and_answered_200(
    hooked, enqueued, body: bytes, content_type: str
) -> None:
    response = post(hooked, body, content_type)

    assert response.status_code == 200
    [event] = WebhookEvent.objects.all()
    assert bytes(event.body) == body  # exactly as received, for inspection
    assert event.status == Status.FAILED
    assert event.error.startswith("unreadable body:")
    assert "\x00" not in event.events
    assert enqueued == []


def test_nul_in_a_header_or_the_content_type_is_stored_without_it(hooked) -> None:
    body = recording("leads-status.form.txt").body

    response = post(hooked, body, "application/x-www-form-urlencoded\x00x", HTTP_X_AMOCRM_REQUESTID="a\x00b")

    assert response.status_code == 200
    [event] = WebhookEvent.objects.all()
    assert event.status == Status.RECEIVED
    assert event.request_id == "a\ufffdb"
    assert "\x00" not in event.content_type


def headers_as_django_names_them(meta: dict[str, str]) -> dict[str, str]:
    """What the row stored before the headers were read from META directly: Django's request.headers,
    named in lower case, without the unstored ones, fit for jsonb."""
    return {
        intake._text(name.lower()): intake._text(value)
        for name, value in HttpHeaders(meta).items()
        if name.lower() not in intake.UNSTORED_HEADERS
    }


header_names = st.one_of(
    st.sampled_from(
        ["HOST", "USER_AGENT", "X_AMOCRM_REQUESTID", "COOKIE", "AUTHORIZATION", "CONTENT_TYPE", ""]
    ),
    st.text(alphabet="ABCXYZabc_-\x00", max_size=8),
    st.text(max_size=6),
)
meta_keys = st.one_of(
    header_names.map("HTTP_{}".format),
    st.sampled_from(["CONTENT_TYPE", "CONTENT_LENGTH", "REMOTE_ADDR", "PATH_INFO", "wsgi.input"]),
    st.text(max_size=8),
)
header_values = st.one_of(st.text(max_size=12), st.sampled_from(["a\x00b", "\ud800", "é"]))


@settings(max_examples=300, deadline=None)
@given(meta=st.dictionaries(meta_keys, header_values, max_size=10))
def test_the_stored_headers_are_what_django_names_from_any_environment(meta: dict[str, str]) -> None:
    assert intake.stored_headers(meta) == headers_as_django_names_them(meta)


def test_the_stored_headers_of_a_kommo_delivery_are_what_django_named() -> None:
    meta = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": FORM,
        "CONTENT_LENGTH": "2359",
        "HTTP_HOST": "portal.example",
        "HTTP_USER_AGENT": "amoCRM-Webhooks/3.0",
        "HTTP_X_AMOCRM_REQUESTID": "6f1c7a52",
        "HTTP_COOKIE": "sessionid=secret",
        "HTTP_AUTHORIZATION": "Bearer secret",
        "HTTP_X_FORWARDED_FOR": "203.0.113.7",
        "REMOTE_ADDR": "127.0.0.1",
    }

    assert (
        intake.stored_headers(meta)
        == headers_as_django_names_them(meta)
        == {
            "content-type": FORM,
            "content-length": "2359",
            "host": "portal.example",
            "user-agent": "amoCRM-Webhooks/3.0",
            "x-amocrm-requestid": "6f1c7a52",
            "x-forwarded-for": "203.0.113.7",
        }
    )


def chunked(body: bytes, *, terminated: bool = True) -> dict[str, object]:
    """What gunicorn gives the application for a chunked body: no Content-Length, the decoded body in an
    input that ends where the body ends."""
    extra: dict[str, object] = {
        "CONTENT_LENGTH": "",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input": io.BytesIO(body),
    }
    if terminated:
        extra["wsgi.input_terminated"] = True
    return extra


def test_a_chunked_body_without_content_length_is_read_whole(
    hooked, enqueued, django_capture_on_commit_callbacks
) -> None:
    body = recording("leads-status.form.txt").body

    with django_capture_on_commit_callbacks(execute=True):
        response = post(hooked, body, **chunked(body))

    assert response.status_code == 200
    [event] = WebhookEvent.objects.all()
    assert bytes(event.body) == body
    assert (event.status, event.events) == (Status.RECEIVED, "leads[status]")
    assert enqueued == [event.pk]


def test_a_chunked_body_over_the_limit_is_413_and_nothing_is_stored(hooked, settings) -> None:
    settings.KOMMO_WEBHOOK_MAX_BODY_BYTES = 1000
    body = b"leads[status][0][id]=" + b"1" * 1000

    response = post(hooked, body, **chunked(body))

    assert response.status_code == 413
    assert not WebhookEvent.objects.exists()


def test_a_chunked_body_on_a_server_that_cannot_end_it_is_411_and_nothing_is_stored(hooked) -> None:
    body = recording("leads-status.form.txt").body

    response = post(hooked, body, **chunked(body, terminated=False))

    assert response.status_code == 411
    assert not WebhookEvent.objects.exists()


# Keys of every shape, with NUL, lone surrogates and brackets among the characters.
key_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=30)
tree = st.recursive(
    st.text(max_size=10) | st.integers() | st.none(),
    lambda children: st.dictionaries(key_text, children, max_size=4),
    max_leaves=12,
)


@hostile
@given(
    body=st.binary(max_size=600), content_type=st.sampled_from([FORM, "application/json", "", "text/x\x00"])
)
def test_any_bytes_get_a_2xx_and_are_stored(hooked, body: bytes, content_type: str) -> None:
    before = WebhookEvent.objects.count()

    response = post(hooked, body, content_type)

    assert response.status_code == 200
    assert WebhookEvent.objects.count() == before + 1


@hostile
@given(keys=st.lists(st.tuples(key_text, key_text), max_size=6))
def test_any_form_keys_get_a_2xx_and_are_stored(hooked, keys: list[tuple[str, str]]) -> None:
    from urllib.parse import quote_plus

    body = "&".join(
        f"{quote_plus(key, errors='surrogatepass')}={quote_plus(value, errors='surrogatepass')}"
        for key, value in keys
    ).encode()
    before = WebhookEvent.objects.count()

    response = post(hooked, body)

    assert response.status_code == 200
    assert WebhookEvent.objects.count() == before + 1


@hostile
@given(document=tree)
def test_any_json_document_gets_a_2xx_and_is_stored(hooked, document: object) -> None:
    body = json.dumps(document).encode()  # ensure_ascii: lone surrogates and NUL travel as escapes
    before = WebhookEvent.objects.count()

    response = post(hooked, body, "application/json")

    assert response.status_code == 200
    assert WebhookEvent.objects.count() == before + 1
