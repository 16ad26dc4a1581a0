"""Bounds on the database time of the request paths that someone waits on with a deadline of their own.

Kommo gives a webhook 2 seconds, and an intake client is told to retry on a 503. On the paths in
``DATABASE_BOUNDED_PATHS`` two bounds apply, one on each side of the connection:

- **On the server**, a statement stuck behind a lock (an account row held by a token refresh, a table locked
  by a migration): the connection's ``statement_timeout`` and ``lock_timeout`` are
  ``DATABASE_REQUEST_STATEMENT_TIMEOUT_MS``. The server cancels the statement and the connection stays
  usable. Both are needed: Django's foreign keys are checked at commit (``DEFERRABLE INITIALLY DEFERRED``),
  after the statement, where only ``lock_timeout`` still applies — an INSERT whose account row is locked
  waits there. They are set on the connection (session level) the first time a bounded path uses it, and
  reset the first time another path does, so a process serving only webhooks pays one ``SET`` per
  connection, not one per request. Other pages (the admin's dry runs, reports) keep the server's default.
- **On the client**, a server that cannot enforce its own timeouts (its processes frozen, the host gone, a
  network that drops packets) or that does not answer new connections: the request's database time, every
  wait on the database together (connecting, queries, commit), is at most ``DATABASE_REQUEST_BUDGET_MS``.
  The budget is kept here, per request (a context variable, so it holds per thread under any gunicorn
  worker class); the portal's PostgreSQL backend (``apps/core/postgresql``) makes every connection keep to
  it, and closes a connection whose wait it cut short: the server may still run what it was sent, so the
  connection is never used again. The view answers 503 as for any database error.

The budget is the longer of the two (1.5 s against 1 s), so that a lock wait is cancelled by the server
first and the connection kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse

_BOUNDED = "_portal_statement_timeout_on"  # attribute on the wrapper: the driver connection it was set on


class DatabaseBudget:
    """What is left of a request's database time, in seconds (negative once overspent)."""

    __slots__ = ("left", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.left = seconds


_budget: ContextVar[DatabaseBudget | None] = ContextVar("portal_database_budget", default=None)


def database_budget() -> DatabaseBudget | None:
    """The budget of the request being served in this thread, or None outside a bounded request."""
    return _budget.get()


@contextmanager
def database_budget_for(seconds: float) -> Iterator[DatabaseBudget]:
    """Every database wait inside the block counts against ``seconds`` (on the portal's PostgreSQL
    backend; other backends ignore it)."""
    budget = DatabaseBudget(seconds)
    token = _budget.set(budget)
    try:
        yield budget
    finally:
        _budget.reset(token)


def _bounded_paths() -> tuple[str, ...]:
    return tuple(settings.DATABASE_BOUNDED_PATHS)


class RequestPathTimeoutMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if connection.vendor != "postgresql":
            return self.get_response(request)
        bounded = request.path.startswith(_bounded_paths())
        budget_ms = int(settings.DATABASE_REQUEST_BUDGET_MS) if bounded else 0
        if not budget_ms:
            self._apply(bounded=bounded)
            return self.get_response(request)
        with database_budget_for(budget_ms / 1000):
            self._apply(bounded=bounded)
            return self.get_response(request)

    @staticmethod
    def _apply(*, bounded: bool) -> None:
        try:
            _apply(bounded=bounded)
        except DatabaseError:
            pass  # the database is down or stuck: the view meets it and answers for it


def _apply(*, bounded: bool) -> None:
    timeout = int(settings.DATABASE_REQUEST_STATEMENT_TIMEOUT_MS)
    if not timeout:
        return
    current = connection.connection
    is_set = current is not None and getattr(connection, _BOUNDED, None) is current
    if bounded == is_set:
        return
    if not bounded and current is None:
        return  # a new connection starts with the server's default
    with connection.cursor() as cursor:
        if bounded:
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false)",
                [f"{timeout}ms", f"{timeout}ms"],
            )
        else:
            cursor.execute("RESET statement_timeout")
            cursor.execute("RESET lock_timeout")
    setattr(connection, _BOUNDED, connection.connection if bounded else None)
