"""The request's database budget (apps/core/timeouts.py, apps/core/postgresql): every wait on PostgreSQL of a
bounded request, connecting included, ends by the request's deadline, whatever the server does; after a
request missed it, the process holds the others off the database for a while (the fast-fail hold). Every
other request (a page) has a longer deadline of its own, and no hold."""

from __future__ import annotations

import io
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import OperationalError, close_old_connections, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory
from django.test.client import RequestFactory as EnvironFactory
from django.urls import path as url_path

from apps.core import timeouts
from apps.core.timeouts import (
    DatabaseBudget,
    FastFail,
    Passage,
    RequestPathTimeoutMiddleware,
    bounded_wsgi,
    database_budget,
    database_budget_for,
    off_the_database_clock,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]
# Far above the budgets under test and far below "never": without the budget each wait below has no end.
NEVER = 5.0


def separate_connection(**settings: object) -> BaseDatabaseWrapper:
    """A connection of its own to the test database (or elsewhere), closed by the test."""
    default = connections["default"]
    return type(default)({**default.settings_dict, **settings}, alias="budgeted")


@pytest.fixture
def separate() -> Iterator[BaseDatabaseWrapper]:
    wrapper = separate_connection()
    yield wrapper
    wrapper.close()


@contextmanager
def frozen_backend(separate: BaseDatabaseWrapper) -> Iterator[None]:
    """The server process of ``separate``'s connection stopped (SIGSTOP) inside the block — that one only:
    the suite's go on — and resumed after it, or after NEVER seconds, so that old code fails, not hangs."""
    with separate.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone()
    os.kill(backend, signal.SIGSTOP)
    thaw = threading.Timer(NEVER, os.kill, (backend, signal.SIGCONT))
    thaw.start()
    try:
        yield
    finally:
        thaw.cancel()
        os.kill(backend, signal.SIGCONT)


def test_a_query_to_a_frozen_server_is_cut_at_the_budget_and_its_connection_never_used_again(
    separate: BaseDatabaseWrapper,
) -> None:
    with frozen_backend(separate):
        started = time.monotonic()
        with database_budget_for(0.3), pytest.raises(OperationalError, match="database budget"):
            with separate.cursor() as cursor:
                cursor.execute("SELECT 1")
        took = time.monotonic() - started
        assert separate.connection.closed  # what the server was sent may still run: never reused
        assert not separate.is_usable()
    assert took < NEVER

    separate.close()
    with database_budget_for(0.3), separate.cursor() as cursor:  # a new connection serves as usual
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_a_server_that_accepts_and_never_answers_fails_the_connection_at_the_budget_below_connect_timeout(
    db: None,
) -> None:
    silent = socket.socket()  # the kernel completes the handshake; no server ever speaks
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    wrapper = separate_connection(HOST="127.0.0.1", PORT=silent.getsockname()[1])
    started = time.monotonic()
    try:
        with database_budget_for(0.3), pytest.raises(OperationalError, match="database budget"):
            wrapper.ensure_connection()
    finally:
        silent.close()

    # connect_timeout (DATABASE_CONNECT_TIMEOUT) counts whole seconds, at least 2: the budget stops sooner.
    assert time.monotonic() - started < 1.5


def test_the_budget_is_a_deadline_for_every_wait_of_the_request(separate: BaseDatabaseWrapper) -> None:
    separate.ensure_connection()
    with database_budget_for(0.6) as budget:
        with separate.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.35)")  # within the budget alone
        assert 0 < budget.left < 0.3
        assert budget.waited and not budget.missed
        with pytest.raises(OperationalError, match="database budget"), separate.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.35)")  # as long again: cut where the budget ends
        assert budget.missed
        separate.close()
        with pytest.raises(OperationalError, match="database budget"):
            separate.ensure_connection()  # nothing left, not even to connect

    separate.close()
    with separate.cursor() as cursor:  # outside a budget, waits are psycopg's own
        cursor.execute("SELECT 1 FROM pg_sleep(0.35)")
        assert cursor.fetchone() == (1,)


def test_time_spent_off_the_database_comes_out_of_the_same_deadline(separate: BaseDatabaseWrapper) -> None:
    """The process's own work, a garbage collection, or a wait for a CPU on a loaded machine: the answer
    must still come by the deadline, so the database gets what is left of it."""
    separate.ensure_connection()
    started = time.monotonic()
    with database_budget_for(0.5), pytest.raises(OperationalError, match="database budget"):
        time.sleep(0.3)  # the process busy elsewhere
        with separate.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.35)")  # would end 0.65 s after the start
    assert time.monotonic() - started < 0.6


def test_a_wsgi_request_keeps_its_deadline_from_before_djangos_connection_checks(settings) -> None:
    """``request_started`` checks a persistent connection (``close_old_connections``) before any
    middleware runs, and ``request_finished`` again when the server closes the response."""
    settings.DATABASE_REQUEST_BUDGET_MS = 1500
    settings.DATABASE_PAGE_BUDGET_MS = 15000
    seen: dict[str, DatabaseBudget | None] = {}

    def on_started(**kwargs: object) -> None:
        seen["started"] = database_budget()

    def on_finished(**kwargs: object) -> None:
        seen["finished"] = database_budget()

    application = bounded_wsgi(WSGIHandler())
    # Django's own receivers would close the test's connection (its transaction): ours stand in for them.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    request_started.connect(on_started)
    request_finished.connect(on_finished)
    try:
        for path in ("/webhooks/kommo/abc/", "/favicon.ico"):
            environ = EnvironFactory()._base_environ(PATH_INFO=path, REQUEST_METHOD="GET")
            response = application(environ, lambda status, headers, exc_info=None: None)
            seen[f"{path} served"] = database_budget()
            response.close()
            seen[path] = (seen.pop("started"), seen.pop("finished"))  # type: ignore[assignment]
    finally:
        request_started.disconnect(on_started)
        request_finished.disconnect(on_finished)
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)

    started, finished = seen["/webhooks/kommo/abc/"]  # type: ignore[misc]
    assert started is not None and started.seconds == 1.5 and not started.page
    assert finished is started  # the same deadline, when the response is closed after the answer
    started, finished = seen["/favicon.ico"]  # type: ignore[misc]
    assert started is not None and started.seconds == 15 and started.page  # any other path: a page's
    # ...and its close() a deadline of its own: a streamed response (the CSV export) may have taken minutes
    assert finished is not None and finished is not started and finished.seconds == 15 and finished.page
    assert seen["/webhooks/kommo/abc/ served"] is None  # not left behind between the two
    assert seen["/favicon.ico served"] is None


def test_the_time_a_client_takes_to_send_its_body_is_off_the_clock(settings) -> None:
    """With sync workers and no buffering proxy, the body arrives while the view reads it: a slow client
    is not the database's fault, and must not turn a healthy database into a 503."""
    settings.DATABASE_REQUEST_BUDGET_MS = 200
    left: list[float] = []

    class SlowClient(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            time.sleep(0.3)
            return super().read(size)

    def view(environ: dict[str, object], start_response: object) -> list[bytes]:
        body = environ["wsgi.input"].read()  # type: ignore[attr-defined]
        budget = database_budget()
        assert budget is not None and body == b"leads[status][0][id]=1"
        left.append(budget.left)
        return [b"ok"]

    environ = EnvironFactory()._base_environ(PATH_INFO="/webhooks/kommo/abc/", REQUEST_METHOD="POST")
    environ["wsgi.input"] = SlowClient(b"leads[status][0][id]=1")
    bounded_wsgi(view)(environ, None)

    assert 0.1 < left[0] <= 0.2


def test_the_fast_fail_hold_follows_a_missed_deadline_and_one_probe_ends_it() -> None:
    hold = 0.2
    gate = FastFail()

    def request(outcome: str) -> Passage:
        passage = gate.enter()
        budget = DatabaseBudget(1.0, held=passage is Passage.HELD)
        if passage is not Passage.HELD:
            budget.missed = outcome == "missed"
            budget.waited = outcome == "answered"
        gate.leave(passage, budget, hold=hold)
        return passage

    assert request("answered") is Passage.OPEN
    assert request("missed") is Passage.OPEN  # this one waited for the whole budget
    assert request("answered") is Passage.HELD  # the next ones do not try
    time.sleep(hold)
    assert request("missed") is Passage.PROBE  # one tries, and the database still does not answer
    assert request("answered") is Passage.HELD  # held again, for another hold
    time.sleep(hold)
    probe = gate.enter()
    assert probe is Passage.PROBE
    assert gate.enter() is Passage.HELD  # one probe at a time (threaded workers)
    answered = DatabaseBudget(1.0)
    answered.waited = True
    gate.leave(probe, answered, hold=hold)
    assert request("answered") is Passage.OPEN  # the probe was answered in time: the hold is over
    time.sleep(hold)
    assert request("nothing") is Passage.OPEN


def test_a_probe_that_never_reached_the_database_leaves_the_hold_to_the_next() -> None:
    gate = FastFail()
    gate.leave(gate.enter(), _missed(), hold=0.05)
    time.sleep(0.05)
    probe = gate.enter()
    gate.leave(probe, DatabaseBudget(1.0), hold=0.05)  # a 404 or a 413: no query
    assert (probe, gate.enter()) == (Passage.PROBE, Passage.PROBE)


def _missed() -> DatabaseBudget:
    budget = DatabaseBudget(1.0)
    budget.missed = True
    return budget


def test_a_held_request_does_not_touch_the_database(separate: BaseDatabaseWrapper) -> None:
    separate.ensure_connection()
    with database_budget_for(1.0, held=True) as budget:
        with pytest.raises(OperationalError, match="not tried"):
            with separate.cursor() as cursor:
                cursor.execute("SELECT 1")
        separate.close()
        with pytest.raises(OperationalError, match="not tried"):
            separate.ensure_connection()
    assert not budget.missed  # a hold does not lengthen itself


def test_the_middleware_holds_bounded_requests_after_a_missed_deadline(settings, monkeypatch) -> None:
    settings.DATABASE_REQUEST_BUDGET_MS = 1500
    settings.DATABASE_REQUEST_STATEMENT_TIMEOUT_MS = 0
    settings.DATABASE_REQUEST_FAST_FAIL_MS = 60_000
    monkeypatch.setattr(timeouts, "fast_fail", FastFail())
    held: list[tuple[str, bool | None]] = []

    def view(request: HttpRequest) -> HttpResponse:
        budget = database_budget()
        held.append((request.path, budget.held if budget else None))
        if request.path.endswith("miss/"):
            budget.missed = True  # as the backend marks a wait cut at the deadline
        return HttpResponse()

    middleware = RequestPathTimeoutMiddleware(view)
    for path in ("/webhooks/kommo/miss/", "/webhooks/kommo/abc/", "/api/v1/intake/leads"):
        middleware(RequestFactory().post(path))
    middleware(RequestFactory().get("/admin/"))  # a page: a budget of its own, not held

    assert held == [
        ("/webhooks/kommo/miss/", False),
        ("/webhooks/kommo/abc/", True),
        ("/api/v1/intake/leads", True),
        ("/admin/", False),
    ]


def test_a_page_is_never_held_and_its_missed_deadline_starts_no_hold(settings, monkeypatch) -> None:
    """A webhook's missed 1.5 s is no sign that a page's 15 s will be missed, and a page that missed its
    deadline may have run its own long queries: the hold is the webhook and intake requests' alone."""
    settings.DATABASE_REQUEST_BUDGET_MS = 1500
    settings.DATABASE_PAGE_BUDGET_MS = 15000
    settings.DATABASE_REQUEST_STATEMENT_TIMEOUT_MS = 0
    settings.DATABASE_REQUEST_FAST_FAIL_MS = 60_000
    monkeypatch.setattr(timeouts, "fast_fail", FastFail())
    seen: list[tuple[str, float, bool]] = []

    def view(request: HttpRequest) -> HttpResponse:
        budget = database_budget()
        assert budget is not None
        seen.append((request.path, budget.seconds, budget.held))
        if request.path.endswith("miss/"):
            budget.missed = True  # as the backend marks a wait cut at the deadline
        return HttpResponse()

    middleware = RequestPathTimeoutMiddleware(view)
    middleware(RequestFactory().get("/reports/miss/"))  # a page cut at its deadline
    middleware(RequestFactory().post("/webhooks/kommo/abc/"))  # not held for it
    middleware(RequestFactory().post("/webhooks/kommo/miss/"))  # a webhook cut at its own: the hold
    middleware(RequestFactory().post("/webhooks/kommo/abc/"))
    middleware(RequestFactory().get("/deals/"))  # a page within the hold: tried all the same

    assert seen == [
        ("/reports/miss/", 15, False),
        ("/webhooks/kommo/abc/", 1.5, False),
        ("/webhooks/kommo/miss/", 1.5, False),
        ("/webhooks/kommo/abc/", 1.5, True),
        ("/deals/", 15, False),
    ]


def test_time_off_the_database_clock_is_added_to_a_pages_deadline_only() -> None:
    """Waiting for Kommo is not the database's fault: a page is not answered "the database does not
    answer" after a slow Kommo call. A bounded request's deadline is its client's, Kommo or not."""
    with database_budget_for(0.5, page=True) as page:
        with off_the_database_clock():
            time.sleep(0.3)
        assert page.left > 0.4
    with database_budget_for(0.5) as bounded:
        with off_the_database_clock():
            time.sleep(0.3)
        assert bounded.left < 0.25
    with off_the_database_clock():  # no budget at all (a task): nothing to add to
        pass


_pages_connection: list[BaseDatabaseWrapper] = []


def _page_on_its_own_connection(request: HttpRequest) -> HttpResponse:
    with _pages_connection[0].cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("the page")


urlpatterns = [url_path("deals/", _page_on_its_own_connection)]


def test_a_page_on_a_frozen_server_is_answered_503_at_its_deadline_and_its_connection_closed(
    separate: BaseDatabaseWrapper, settings, client
) -> None:
    """The page's budget through the portal's middleware under the test client, answered by its 503 page
    (apps/core/unavailable.py): the view's query cut at the deadline, the connection never used again."""
    settings.DATABASE_PAGE_BUDGET_MS = 300
    settings.ROOT_URLCONF = __name__
    _pages_connection[:] = [separate]
    try:
        with frozen_backend(separate):
            started = time.monotonic()
            response = client.get("/deals/")
            took = time.monotonic() - started
            assert separate.connection.closed
    finally:
        _pages_connection.clear()

    assert (response.status_code, response["Retry-After"]) == (503, "30")
    assert "Temporarily unavailable" in response.content.decode()
    assert took < 0.3 + 0.5, took  # the deadline, and a margin for writing the page on a loaded machine
    separate.close()
    _pages_connection[:] = [separate]
    try:
        assert client.get("/deals/").content == b"the page"  # the next request connects again
    finally:
        _pages_connection.clear()


def test_the_bounded_paths_get_their_budget_and_every_other_request_a_pages(settings) -> None:
    settings.DATABASE_REQUEST_BUDGET_MS = 1500
    settings.DATABASE_PAGE_BUDGET_MS = 15000
    settings.DATABASE_REQUEST_STATEMENT_TIMEOUT_MS = 0
    seen: dict[str, tuple[float, bool] | None] = {}

    def view(request: HttpRequest) -> HttpResponse:
        budget = database_budget()
        seen[request.path] = (budget.seconds, budget.page) if budget else None
        return HttpResponse()

    middleware = RequestPathTimeoutMiddleware(view)
    for path in (
        "/webhooks/kommo/abc/",
        "/api/v1/intake/leads",
        "/admin/",
        "/reports/",
        "/api/v1/export/deals",
    ):
        middleware(RequestFactory().post(path))
    settings.DATABASE_REQUEST_BUDGET_MS = 0  # off: not a page's budget instead
    middleware(RequestFactory().post("/api/v1/intake/submissions/1"))
    settings.DATABASE_PAGE_BUDGET_MS = 0  # off
    middleware(RequestFactory().post("/deals/"))

    assert seen == {
        "/webhooks/kommo/abc/": (1.5, False),
        "/api/v1/intake/leads": (1.5, False),
        "/admin/": (15, True),
        "/reports/": (15, True),
        "/api/v1/export/deals": (15, True),
        "/api/v1/intake/submissions/1": None,
        "/deals/": None,
    }
    assert database_budget() is None  # not left behind
