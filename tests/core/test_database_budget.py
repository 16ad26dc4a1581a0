"""The request's database budget (apps/core/timeouts.py, apps/core/postgresql): every wait on PostgreSQL of a
bounded request together, connecting included, is cut short at the budget, whatever the server does."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from django.db import OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from apps.core.timeouts import RequestPathTimeoutMiddleware, database_budget, database_budget_for

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


def test_a_query_to_a_frozen_server_is_cut_at_the_budget_and_its_connection_never_used_again(
    separate: BaseDatabaseWrapper,
) -> None:
    with separate.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone()
    os.kill(backend, signal.SIGSTOP)  # this connection's server process only: the suite's go on
    thaw = threading.Timer(NEVER, os.kill, (backend, signal.SIGCONT))  # so that the old code fails, not hangs
    thaw.start()
    started = time.monotonic()
    try:
        with database_budget_for(0.3), pytest.raises(OperationalError, match="database budget"):
            with separate.cursor() as cursor:
                cursor.execute("SELECT 1")
        took = time.monotonic() - started
        assert separate.connection.closed  # what the server was sent may still run: never reused
        assert not separate.is_usable()
    finally:
        thaw.cancel()
        os.kill(backend, signal.SIGCONT)
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


def test_the_budget_is_every_wait_of_the_request_together(separate: BaseDatabaseWrapper) -> None:
    separate.ensure_connection()
    with database_budget_for(0.6) as budget:
        with separate.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.35)")  # within the budget alone
        assert 0 < budget.left < 0.3
        with pytest.raises(OperationalError, match="database budget"), separate.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.35)")  # as long again: cut where the budget ends
        separate.close()
        with pytest.raises(OperationalError, match="database budget"):
            separate.ensure_connection()  # nothing left, not even to connect

    separate.close()
    with separate.cursor() as cursor:  # outside a budget, waits are psycopg's own
        cursor.execute("SELECT 1 FROM pg_sleep(0.35)")
        assert cursor.fetchone() == (1,)


def test_only_the_bounded_paths_get_a_budget(settings) -> None:
    settings.DATABASE_REQUEST_BUDGET_MS = 1500
    settings.DATABASE_REQUEST_STATEMENT_TIMEOUT_MS = 0
    seen: dict[str, float | None] = {}

    def view(request: HttpRequest) -> HttpResponse:
        budget = database_budget()
        seen[request.path] = budget.seconds if budget else None
        return HttpResponse()

    middleware = RequestPathTimeoutMiddleware(view)
    for path in ("/webhooks/kommo/abc/", "/api/v1/intake/leads", "/admin/", "/reports/"):
        middleware(RequestFactory().post(path))
    settings.DATABASE_REQUEST_BUDGET_MS = 0  # off
    middleware(RequestFactory().post("/api/v1/intake/submissions/1"))

    assert seen == {
        "/webhooks/kommo/abc/": 1.5,
        "/api/v1/intake/leads": 1.5,
        "/admin/": None,
        "/reports/": None,
        "/api/v1/intake/submissions/1": None,
    }
    assert database_budget() is None  # not left behind
