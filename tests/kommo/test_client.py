"""The client against recorded Kommo answers: auth, paging, batching, errors, retries, circuit breaker."""

import datetime as dt
import json
import logging
import time
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses

from apps.core.timeouts import database_budget_for
from apps.kommo.client import KommoClient, RetryPolicy, query_params
from apps.kommo.exceptions import (
    KommoAuthError,
    KommoBlocked,
    KommoConnectionError,
    KommoForbidden,
    KommoGatewayTimeout,
    KommoNotFound,
    KommoPaymentRequired,
    KommoRateLimited,
    KommoServerError,
    KommoTimeout,
    KommoUnprocessable,
    KommoValidationError,
)
from apps.kommo.models import KommoAccount
from apps.kommo.types import ComplexLeadWrite, ContactWrite, LeadWrite, NoteWrite, TaskWrite
from tests.kommo.conftest import LONG_LIVED_TOKEN, RECORDED_BASE_URL
from tests.kommo.payloads import payload, text

URL = RECORDED_BASE_URL


def query(call) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(call.request.url).query)


def test_it_sends_the_bearer_token_and_reads_the_account(client, api):
    api.get(f"{URL}/api/v4/account", json=payload("account.json"), headers={"X-Request-Id": "req-1"})

    account = client.account_get()

    assert (account.id, account.subdomain) == (123123123, "yourdomain")
    assert api.calls[0].request.headers["Authorization"] == f"Bearer {LONG_LIVED_TOKEN}"


def timeouts_passed(monkeypatch) -> list[tuple[float, float]]:
    """The ``timeout`` of every request the client sends."""
    seen: list[tuple[float, float]] = []
    original = requests.Session.request

    def spy(self, *args, **kwargs):
        seen.append(kwargs["timeout"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", spy)
    return seen


def test_every_call_has_a_connect_and_a_read_timeout(client, api, settings, monkeypatch):
    settings.KOMMO_CONNECT_TIMEOUT, settings.KOMMO_READ_TIMEOUT = 3.0, 17.0
    seen = timeouts_passed(monkeypatch)
    api.get(f"{URL}/api/v4/account", json=payload("account.json"))

    KommoClient(client.account, limiter=client.limiter).account_get()

    assert seen == [(3.0, 17.0)]


def test_a_pages_database_deadline_does_not_run_while_kommo_is_waited_on(client, api):
    """A manager's stakeholder edit calls Kommo during the request: a slow Kommo must not leave the page's
    database deadline spent, and the page answered "the database does not answer" (apps/core/timeouts.py)."""

    def slow(request):
        time.sleep(0.4)
        return (200, {}, json.dumps(payload("account.json")))

    api.add_callback("GET", f"{URL}/api/v4/account", callback=slow)
    with database_budget_for(0.5, page=True) as page:
        client.account_get()
        assert page.left > 0.3  # Kommo's 0.4 s not counted
    with database_budget_for(0.5) as bounded:  # a webhook's deadline is Kommo's 2 s: everything counts
        client.account_get()
        assert bounded.left < 0.1


def test_a_page_waits_for_kommo_no_longer_than_its_allowance_from_the_requests_start(
    client, api, sleeps, settings, monkeypatch
):
    """A person waits for the page, and gunicorn restarts a worker that has not answered within
    GUNICORN_TIMEOUT: five tries of up to KOMMO_READ_TIMEOUT each would outlast it (no answer at all)."""
    settings.KOMMO_PAGE_BUDGET_MS = 400
    seen = timeouts_passed(monkeypatch)

    def slow_failure(request):
        time.sleep(0.15)
        return (500, {}, json.dumps(payload("error-500.json")))

    api.add_callback("GET", f"{URL}/api/v4/account", callback=slow_failure)
    # Backoffs too short to end the tries (the default's random ones may outlast what is left at once).
    page_client = KommoClient(
        client.account, limiter=client.limiter, sleep=sleeps, retry=RetryPolicy(backoff_base=0.001)
    )
    with database_budget_for(15, page=True), pytest.raises(KommoServerError):
        page_client.account_get()

    assert 1 <= len(api.calls) < page_client.retry.max_attempts  # given up when the 0.4 s were spent
    reads = [read for _, read in seen]
    assert all(read <= 0.4 and connect <= 0.4 for connect, read in seen)  # each wait within what was left
    assert reads == sorted(reads, reverse=True) and len(set(reads)) == len(reads)  # less left at each try


def test_a_call_is_not_sent_once_the_pages_time_for_kommo_is_spent(client, api, settings, monkeypatch):
    settings.KOMMO_PAGE_BUDGET_MS = 1
    api.get(f"{URL}/api/v4/account", json=payload("account.json"))

    with database_budget_for(15, page=True):
        time.sleep(0.01)
        with pytest.raises(KommoConnectionError, match=r"not sent: the page's 0\.001 s for Kommo are spent"):
            client.account_get()
    assert not api.calls


def test_tasks_and_bounded_requests_keep_the_read_timeout_and_every_try(
    client, api, sleeps, settings, monkeypatch
):
    settings.KOMMO_PAGE_BUDGET_MS, settings.KOMMO_READ_TIMEOUT = 400, 17.0
    seen = timeouts_passed(monkeypatch)
    api.get(f"{URL}/api/v4/account", status=500, json=payload("error-500.json"))

    with pytest.raises(KommoServerError):  # a task: no request
        KommoClient(client.account, limiter=client.limiter, sleep=sleeps, retry=client.retry).account_get()
    with database_budget_for(1.5), pytest.raises(KommoServerError):  # a webhook's: never calls Kommo
        KommoClient(client.account, limiter=client.limiter, sleep=sleeps, retry=client.retry).account_get()

    assert len(api.calls) == 2 * client.retry.max_attempts
    assert {read for _, read in seen} == {17.0}


def test_it_follows_next_links_page_by_page_and_stops_at_the_last_page(client, api):
    first = payload("leads-list-response-amocrm-paged.json")
    api.get(
        f"{URL}/api/v4/leads",
        json=first,
        match=[
            responses.matchers.query_param_matcher(
                {"limit": "250", "with": "contacts", "filter[pipeline_id][]": "1300"}
            )
        ],
    )
    api.get(
        f"{URL}/api/v4/leads",
        json=payload("leads-list-response.json"),
        match=[responses.matchers.query_param_matcher({"limit": "2", "page": "3"})],
    )

    leads = client.leads_list(filters={"pipeline_id": [1300]}, with_=["contacts"])
    first_page_ids = [lead["id"] for lead in first["_embedded"]["leads"]]
    assert len(api.calls) == 0  # a generator: nothing is fetched before iteration
    ids = [lead.id for lead in leads]

    assert ids == [*first_page_ids, 20024930]
    assert len(api.calls) == 2
    # the next link is followed under the account's base URL, whatever host Kommo wrote into it
    assert api.calls[1].request.url.startswith(f"{URL}/api/v4/leads?")


def test_a_next_link_already_followed_ends_the_listing(client, api):
    def page(task_id, following):
        return {"_embedded": {"tasks": [{"id": task_id}]}, "_links": {"next": {"href": following}}}

    api.get(f"{URL}/api/v4/tasks", json=page(1, f"{URL}/api/v4/tasks?page=2"))
    api.get(f"{URL}/api/v4/tasks", json=page(2, f"{URL}/api/v4/tasks?page=2"))  # Kommo points back
    api.get(f"{URL}/api/v4/tasks", json={"_embedded": {"tasks": [{"id": 3}]}})

    assert [task.id for task in client.tasks_list()] == [1, 2]
    assert len(api.calls) == 2


def test_a_204_answer_is_an_empty_list(client, api):
    api.get(f"{URL}/api/v4/contacts", status=204, body=b"")

    assert client.contacts_search("+1 415 555 0000") == []
    assert ("query", "+1 415 555 0000") in query(api.calls[0])


def test_events_are_read_100_per_page_and_custom_fields_50(client, api):
    api.get(f"{URL}/api/v4/events", status=204)
    api.get(f"{URL}/api/v4/leads/custom_fields", status=204)
    api.get(f"{URL}/api/v4/leads", status=204)

    list(client.events_list({"type": ["lead_status_changed"]}))
    list(client.custom_fields_list("leads"))
    list(client.leads_list())

    assert [dict(query(call))["limit"] for call in api.calls] == ["100", "50", "250"]


def test_filters_use_kommo_bracket_syntax():
    params = query_params(
        filters={
            "id": [1, 2],
            "updated_at": {"from": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)},
            "statuses": [{"pipeline_id": 7, "status_id": 142}],
            "is_completed": False,
        },
        with_=["contacts", "catalog_elements"],
        order={"updated_at": "asc"},
    )

    assert params == [
        ("filter[id][]", "1"),
        ("filter[id][]", "2"),
        ("filter[updated_at][from]", "1704067200"),
        ("filter[statuses][0][pipeline_id]", "7"),
        ("filter[statuses][0][status_id]", "142"),
        ("filter[is_completed]", "0"),
        ("order[updated_at]", "asc"),
        ("with", "contacts,catalog_elements"),
    ]


def _echo_leads(request):
    items = json.loads(request.body)
    leads = [{"id": item["id"], "updated_at": 1686732474} for item in items]
    return 200, {}, json.dumps({"_embedded": {"leads": leads}})


def test_batch_writes_are_sent_in_chunks_of_50(client, api):
    api.add_callback("PATCH", f"{URL}/api/v4/leads", callback=_echo_leads)

    results = client.leads_update([LeadWrite(id=n, price=n) for n in range(1, 121)])

    assert [len(json.loads(call.request.body)) for call in api.calls] == [50, 50, 20]
    assert [result.id for result in results] == list(range(1, 121))


def _echo_created(key):
    def answer(request):
        items = json.loads(request.body)
        created = [{"id": 1000 + n, "request_id": item.get("request_id")} for n, item in enumerate(items)]
        return 200, {}, json.dumps({"_embedded": {key: created}})

    return answer


def test_tasks_and_notes_are_added_in_batches_of_the_size_asked_up_to_250(client, api):
    api.add_callback("POST", f"{URL}/api/v4/tasks", callback=_echo_created("tasks"))
    api.add_callback("POST", f"{URL}/api/v4/leads/notes", callback=_echo_created("notes"))
    due = dt.datetime(2025, 5, 2, tzinfo=dt.UTC)
    tasks = [
        TaskWrite(text=f"Task {n}", complete_till=due, entity_id=n, entity_type="leads") for n in range(260)
    ]
    notes = [NoteWrite(entity_id=n, text=f"Note {n}") for n in range(260)]

    client.tasks_create(tasks, batch_size=250)
    client.notes_create("leads", notes, batch_size=250)
    by_default = len(client.tasks_create(tasks[:120]))

    sizes = [
        (call.request.url.split("/api/v4/")[1], len(json.loads(call.request.body))) for call in api.calls
    ]
    assert sizes == [
        ("tasks", 250),
        ("tasks", 10),
        ("leads/notes", 250),
        ("leads/notes", 10),
        ("tasks", 50),
        ("tasks", 50),
        ("tasks", 20),
    ]
    assert by_default == 120
    with pytest.raises(ValueError, match="between 1 and 250"):
        client.tasks_create(tasks, batch_size=251)


def test_the_notes_of_some_deals_are_listed(client, api):
    api.get(
        f"{URL}/api/v4/leads/notes",
        json={
            "_embedded": {
                "notes": [{"id": 7, "entity_id": 11, "note_type": "common", "params": {"text": "Hi"}}]
            }
        },
    )

    [note] = client.notes_list("leads", {"entity_id": [11, 12]})

    assert (note.id, note.entity_id, note.text) == (7, 11, "Hi")
    assert ("filter[entity_id][]", "11") in query(api.calls[0]) and ("limit", "250") in query(api.calls[0])


def test_a_batch_answered_504_is_halved_and_retried(client, api):
    def gateway(request):
        items = json.loads(request.body)
        if len(items) > 13:
            return 504, {}, "<html>504 Gateway Time-out</html>"
        return _echo_leads(request)

    api.add_callback("PATCH", f"{URL}/api/v4/leads", callback=gateway)

    results = client.leads_update([LeadWrite(id=n, status_id=142) for n in range(1, 51)])

    assert [len(json.loads(call.request.body)) for call in api.calls] == [50, 25, 12, 13, 25, 12, 13]
    assert [result.id for result in results] == list(range(1, 51))


def test_a_single_item_answered_504_is_a_server_error_after_the_retries(client, api, sleeps):
    api.patch(f"{URL}/api/v4/leads", status=504, body="<html>504</html>")

    with pytest.raises(KommoGatewayTimeout) as caught:
        client.leads_update([LeadWrite(id=1, price=1)])

    assert not caught.value.permanent and len(api.calls) == 4 and len(sleeps.delays) == 3


def test_validation_errors_point_at_the_items_of_the_whole_batch(client, api):
    def validate(request):
        items = json.loads(request.body)
        if items[0]["id"] == 51:
            problem = payload("error-validation.json")
            problem["validation-errors"][0]["request_id"] = "3"
            return 400, {"Content-Type": "application/problem+json"}, json.dumps(problem)
        return _echo_leads(request)

    api.add_callback("PATCH", f"{URL}/api/v4/leads", callback=validate)

    with pytest.raises(KommoValidationError) as caught:
        client.leads_update([LeadWrite(id=n, price=n) for n in range(1, 61)])

    error = caught.value
    assert error.permanent and error.status == 400
    assert list(error.errors) == ["53"]
    assert [(issue.code, issue.path) for issue in error.errors["53"]] == [
        ("NotSupportedChoice", "custom_fields_values.0.field_id"),
        ("InvalidType", "status_id"),
    ]


@pytest.mark.parametrize(
    ("status", "fixture", "error_class", "permanent"),
    [
        (400, "error-400-empty-body.json", KommoValidationError, True),
        (401, "error-401.json", KommoAuthError, True),
        (402, "error-402.json", KommoPaymentRequired, True),
        (404, "error-404.json", KommoNotFound, True),
        (405, "error-405.json", KommoUnprocessable, True),
        (422, "error-422-limit.json", KommoUnprocessable, True),
        (500, "error-500.json", KommoServerError, False),
    ],
)
def test_problem_answers_become_typed_errors(account, limiter, api, status, fixture, error_class, permanent):
    client = KommoClient(account, limiter=limiter, retry=RetryPolicy(max_attempts=1))
    problem = payload(fixture)
    api.get(f"{URL}/api/v4/users", status=status, json=problem, headers={"X-Request-Id": "abc-123"})

    with pytest.raises(error_class) as caught:
        list(client.users_list())

    assert type(caught.value) is error_class
    assert caught.value.permanent is permanent
    assert (caught.value.status, caught.value.request_id) == (status, "abc-123")
    assert caught.value.detail == problem["detail"]


def test_it_waits_retry_after_on_a_429_and_then_succeeds(client, api, sleeps):
    api.get(f"{URL}/api/v4/account", status=429, json={**payload("error-429.json"), "retry_after": 2})
    api.get(f"{URL}/api/v4/account", json=payload("account.json"))

    assert client.account_get().id == 123123123
    assert sleeps.delays == [2]


def test_a_retry_after_longer_than_allowed_is_raised_to_the_caller(client, api, sleeps):
    api.get(f"{URL}/api/v4/account", status=429, json=payload("error-429.json"))  # retry_after 300

    with pytest.raises(KommoRateLimited) as caught:
        client.account_get()

    assert caught.value.retry_after == 300 and not caught.value.permanent
    assert sleeps.delays == []


def test_an_html_429_backs_off_exponentially_with_jitter(client, api, sleeps):
    for _ in range(3):
        api.get(f"{URL}/api/v4/account", status=429, body="<html><body>429 Too Many Requests</body></html>")
    api.get(f"{URL}/api/v4/account", json=payload("account.json"))

    client.account_get()

    policy = client.retry
    assert len(sleeps.delays) == 3
    for attempt, delay in enumerate(sleeps.delays, start=1):
        assert 0 <= delay <= policy.backoff_base * 2 ** (attempt - 1)


def test_server_errors_are_retried_a_bounded_number_of_times(client, api, sleeps):
    api.get(f"{URL}/api/v4/account", status=500, json=payload("error-500.json"))

    with pytest.raises(KommoServerError):
        client.account_get()

    assert len(api.calls) == client.retry.max_attempts
    assert len(sleeps.delays) == client.retry.max_attempts - 1


def test_a_read_that_timed_out_is_retried(client, api, sleeps):
    api.get(f"{URL}/api/v4/account", body=requests.ReadTimeout("read timed out"))
    api.get(f"{URL}/api/v4/account", json=payload("account.json"))

    assert client.account_get().id == 123123123
    assert len(sleeps.delays) == 1


def test_a_create_that_timed_out_is_not_repeated(client, api):
    api.post(f"{URL}/api/v4/leads", body=requests.ReadTimeout("read timed out"))

    with pytest.raises(KommoTimeout) as caught:
        client.leads_create([LeadWrite(name="Deal")])

    assert not caught.value.permanent
    assert len(api.calls) == 1


def test_a_create_that_could_not_connect_is_repeated(client, api):
    api.post(f"{URL}/api/v4/leads", body=requests.ConnectTimeout("connect timed out"))
    api.post(f"{URL}/api/v4/leads", json=payload("leads-post-response.json"))

    results = client.leads_create([LeadWrite(name="Example Lead 1"), LeadWrite(name="Example Lead 2")])

    assert [(result.id, result.request_id) for result in results] == [(152462, "0"), (152464, "1")]


def test_a_create_answered_429_is_sent_again_after_retry_after(client, api, sleeps):
    api.post(f"{URL}/api/v4/leads", status=429, json={**payload("error-429.json"), "retry_after": 1})
    api.post(f"{URL}/api/v4/leads", json=payload("leads-post-response.json"))

    results = client.leads_create([LeadWrite(name="Example Lead 1"), LeadWrite(name="Example Lead 2")])

    assert [result.id for result in results] == [152462, 152464]
    assert len(api.calls) == 2 and sleeps.delays == [1]


def test_an_unreachable_kommo_is_a_transient_connection_error(client, api):
    api.get(f"{URL}/api/v4/account", body=requests.ConnectionError("refused"))

    with pytest.raises(KommoConnectionError) as caught:
        client.account_get()

    assert not caught.value.permanent


def test_the_html_403_block_stops_every_call_until_an_admin_resets_it(client, api):
    from apps.kommo.services.accounts import account_unblock

    api.get(
        f"{URL}/api/v4/leads/1", status=403, body=text("error-403-blocked.html.txt"), content_type="text/html"
    )

    with pytest.raises(KommoBlocked):
        client.leads_get(1)
    stored = KommoAccount.objects.get(pk=client.account.pk)
    assert stored.blocked_since is not None and "403 Forbidden" in stored.blocked_reason

    # another client (another worker) on the same account does not call Kommo at all
    other = KommoClient(KommoAccount.objects.get(pk=client.account.pk), limiter=client.limiter)
    with pytest.raises(KommoBlocked):
        other.account_get()
    assert len(api.calls) == 1

    account_unblock(account=stored)
    api.get(f"{URL}/api/v4/account", json=payload("account.json"))
    assert other.account_get().id == 123123123


def test_a_problem_403_is_a_missing_right_and_does_not_block(client, api):
    api.get(
        f"{URL}/api/v4/webhooks",
        status=403,
        json={"title": "Forbidden", "status": 403, "detail": "Client doesn't have the required scope"},
    )

    with pytest.raises(KommoForbidden):
        client.webhooks_list()

    assert KommoAccount.objects.get(pk=client.account.pk).blocked_since is None


def test_leads_get_reads_embedded_contacts_and_answers_none_when_kommo_has_no_content(client, api):
    api.get(f"{URL}/api/v4/leads/3912171", json=payload("lead-get-response.json"))
    api.get(f"{URL}/api/v4/leads/404", status=204)

    lead = client.leads_get(3912171, with_=["contacts", "catalog_elements"])

    assert lead is not None and lead.main_contact_id == 10971465
    assert ("with", "contacts,catalog_elements") in query(api.calls[0])
    assert client.leads_get(404) is None


def test_leads_complex_create_reads_the_bare_array(client, api):
    api.post(f"{URL}/api/v4/leads/complex", json=payload("leads-complex-response.json"))

    [result] = client.leads_complex_create(
        [
            ComplexLeadWrite(
                lead=LeadWrite(name="New lead 1", request_id="1"), contact=ContactWrite(first_name="Adam")
            )
        ]
    )

    assert (result.id, result.contact_id, result.request_ids, result.merged) == (
        9774766,
        12117258,
        ("1",),
        False,
    )
    sent = json.loads(api.calls[0].request.body)
    assert sent[0]["_embedded"]["contacts"] == [{"first_name": "Adam"}]


def test_every_call_is_logged_with_status_duration_and_request_id_but_never_a_token(
    oauth_account, limiter, api, caplog
):
    oauth_account.token_expires_at = dt.datetime.now(tz=dt.UTC)  # due: the first call refreshes it
    oauth_account.save()
    api.post(f"{URL}/oauth2/access_token", json=payload("token-response.json"))
    api.get(
        f"{URL}/api/v4/account", status=401, json=payload("error-401.json"), headers={"X-Request-Id": "r-401"}
    )
    api.post(
        f"{URL}/oauth2/access_token",
        json={
            "token_type": "Bearer",
            "expires_in": 86400,
            "access_token": "third-access",
            "refresh_token": "third-refresh",
        },
    )
    api.get(f"{URL}/api/v4/account", json=payload("account.json"), headers={"X-Request-Id": "r-200"})

    with caplog.at_level(logging.DEBUG):
        KommoClient(oauth_account, limiter=limiter).account_get()

    lines = [record.getMessage() for record in caplog.records]
    client_lines = [record.getMessage() for record in caplog.records if record.name == "apps.kommo.client"]
    assert any("GET /api/v4/account -> 401" in line and "r-401" in line for line in client_lines)
    assert any(
        "GET /api/v4/account -> 200" in line and "r-200" in line and " ms " in line for line in client_lines
    )
    assert any("POST /oauth2/access_token -> 200" in line for line in client_lines)
    secrets = [
        "old-access-token-aaaaaaaa",
        "old-refresh-token-bbbbbbbb",
        "client-secret-value",
        payload("token-response.json")["access_token"],
        payload("token-response.json")["refresh_token"],
        "third-access",
        "third-refresh",
    ]
    for line in lines:
        for secret in secrets:
            assert secret not in line
