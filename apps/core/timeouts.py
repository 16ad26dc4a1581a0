"""Bounds on the database time of the request paths that someone waits on with a deadline of their own,
and a longer deadline for every other request (at the end).

Kommo gives a webhook 2 seconds, and an intake client is told to retry on a 503. On the paths in
``DATABASE_BOUNDED_PATHS`` three bounds apply:

- **On the server**, a statement stuck behind a lock (an account row held by a token refresh, a table locked
  by a migration): the connection's ``statement_timeout`` and ``lock_timeout`` are
  ``DATABASE_REQUEST_STATEMENT_TIMEOUT_MS``. The server cancels the statement and the connection stays
  usable. Both are needed: Django's foreign keys are checked at commit (``DEFERRABLE INITIALLY DEFERRED``),
  after the statement, where only ``lock_timeout`` still applies — an INSERT whose account row is locked
  waits there. They are set on the connection (session level) the first time a bounded path uses it, and
  reset the first time another path does, so a process serving only webhooks pays one ``SET`` per
  connection, not one per request. Other pages (the admin's dry runs, reports) keep the server's default.
- **On the client**, a server that cannot enforce its own timeouts (its processes frozen, the host gone, a
  network that drops packets) or that does not answer new connections: every wait on the database of the
  request (connecting, the health check of a persistent connection, queries, the commit, and Django's
  connection checks at the start and end of the request) ends by its deadline, ``DATABASE_REQUEST_BUDGET_MS``
  after the request reached the WSGI application (:func:`bounded_wsgi`; the middleware when no WSGI server
  runs it, as under the test client), the time spent waiting for the client to send its body not counted.
  A deadline rather than a sum of the waits: time the process spends elsewhere (its own work, a garbage
  collection, waiting for a CPU on a loaded machine) comes out of the same allowance, so the answer follows
  the deadline by the few milliseconds of writing the 503. The
  budget is kept here, per request (a context variable, so it holds per thread under any gunicorn worker
  class); the portal's PostgreSQL backend (``apps/core/postgresql``) makes every connection keep to it,
  and closes a connection whose wait it cut short: the server may still run what it was sent, so the
  connection is never used again. The view answers 503 as for any database error.
- **In the process**, a database that keeps missing the deadline: each request would hold its worker for
  the whole budget, and deliveries beyond what the workers answer would wait in gunicorn's queue past
  Kommo's 2 seconds. After a request whose budget ran out, the process answers its bounded requests for
  ``DATABASE_REQUEST_FAST_FAIL_MS`` without waiting on the database (their budget starts spent: the view's
  first query fails at once, and it answers 503); then one request at a time tries the database with the
  whole budget, and the first that keeps to it ends the hold (:class:`FastFail`).

The budget is the longer of the two bounds (1.5 s against 1 s), so that a lock wait is cancelled by the
server first and the connection kept.

**Every other request** (a manager's pages, the admin, the reports, the export API) has a database deadline
of its own, longer, ``DATABASE_PAGE_BUDGET_MS`` (15 s) after it reached the application, kept the same way
by the client: a frozen server answers the page 503 (``apps/core/unavailable.py``) by then, instead of
holding the worker until gunicorn kills it at ``GUNICORN_TIMEOUT`` (the person then got no answer at all).
Unlike the bounded paths:

- no ``statement_timeout``: a server that runs enforces nothing on them, as before. It is a setting of the
  connection, and would also cut what a page's connection runs outside the deadline (the CSV export's
  ``COPY`` streams after the view returned, for minutes); in the fault at hand the server cannot enforce
  it anyway.
- no fast-fail hold: a webhook's missed 1.5 s is no sign that a page's 15 s will be missed (a stall of a
  few seconds), a person does not send bursts that queue behind each other, and the "Try again" of the 503
  page must really try. A page missing its deadline does not start the webhooks' hold either: it may be a
  page whose own queries took that long.
- the time the request spends waiting for Kommo (the manager's stakeholder edits call it) is off the clock
  (:func:`off_the_database_clock`), as a slow client's body is: a slow Kommo is not the database's fault,
  and the 503 says the database does not answer.
- the response's ``close()`` (Django's connection checks after the answer) gets a deadline of its own, as
  the CSV export's stream may have lasted minutes before it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import Enum
from time import monotonic
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse

_BOUNDED = "_portal_statement_timeout_on"  # attribute on the wrapper: the driver connection it was set on


class DatabaseBudget:
    """A request's deadline for the database: ``seconds`` after it started (``time.monotonic``)."""

    __slots__ = ("deadline", "held", "missed", "page", "seconds", "started", "waited")

    def __init__(
        self, seconds: float, *, started: float | None = None, held: bool = False, page: bool = False
    ) -> None:
        self.seconds = seconds
        self.started = monotonic() if started is None else started  # when the request reached the application
        self.deadline = self.started + seconds
        self.held = held  # answered without the database: the fast-fail hold (``left`` is 0 from the start)
        self.page = page  # a request off the bounded paths: ``DATABASE_PAGE_BUDGET_MS``, no hold
        self.missed = False  # a wait was cut at the deadline
        self.waited = False  # a wait ended with the server's answer in time

    @property
    def left(self) -> float:
        """Seconds until the deadline (negative once it has passed)."""
        return 0.0 if self.held else self.deadline - monotonic()


_budget: ContextVar[DatabaseBudget | None] = ContextVar("portal_database_budget", default=None)


def database_budget() -> DatabaseBudget | None:
    """The budget of the request being served in this thread, or None outside one (a task, a command)."""
    return _budget.get()


@contextmanager
def database_budget_for(
    seconds: float, *, held: bool = False, page: bool = False
) -> Iterator[DatabaseBudget]:
    """Every database wait inside the block ends within ``seconds`` of its start (on the portal's PostgreSQL
    backend; other backends ignore it); ``held``: none is even tried; ``page``: a page's budget (the time
    spent waiting for Kommo not counted)."""
    budget = DatabaseBudget(seconds, held=held, page=page)
    token = _budget.set(budget)
    try:
        yield budget
    finally:
        _budget.reset(token)


@contextmanager
def off_the_database_clock() -> Iterator[None]:
    """The time spent inside the block is added to a page's deadline: waiting for something that is not
    the database (Kommo). A bounded request's deadline is the one its client keeps, and stays as it is."""
    budget = _budget.get()
    if budget is None or not budget.page:
        yield
        return
    started = monotonic()
    try:
        yield
    finally:
        budget.deadline += monotonic() - started


class Passage(Enum):
    OPEN = "open"  # the database answered the last requests in time
    PROBE = "probe"  # the hold is over: this request tries the database for the others
    HELD = "held"  # within the hold, or another request is probing: not tried


class FastFail:
    """The process's memory of a database that missed a request's deadline (see the module's docstring).

    Per process, as gunicorn's workers are: each worker finds out for itself, at the cost of one request
    held for the budget. Thread-safe, for threaded workers: one probe at a time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until: float | None = None  # None: no hold
        self._probing = False

    def enter(self) -> Passage:
        now = monotonic()
        with self._lock:
            if self._until is None:
                return Passage.OPEN
            if now < self._until or self._probing:
                return Passage.HELD
            self._probing = True
            return Passage.PROBE

    def leave(self, passage: Passage, budget: DatabaseBudget, *, hold: float) -> None:
        if passage is Passage.HELD:
            return
        with self._lock:
            if passage is Passage.PROBE:
                self._probing = False
            if budget.missed:
                self._until = monotonic() + hold
            elif passage is Passage.PROBE and budget.waited:
                self._until = None  # the database answered the probe in time
            # A probe that never waited on the database (a 404, a 413) proves nothing: the next one tries.


fast_fail = FastFail()


def _bounds_apply(path: str) -> bool:
    return (
        connection.vendor == "postgresql"
        and bool(int(settings.DATABASE_REQUEST_BUDGET_MS))
        and path.startswith(_bounded_paths())
    )


def _page_budget_applies(path: str) -> bool:
    return (
        connection.vendor == "postgresql"
        and bool(int(settings.DATABASE_PAGE_BUDGET_MS))
        and not path.startswith(_bounded_paths())
    )


@contextmanager
def _page_budget() -> Iterator[DatabaseBudget]:
    """The budget of any other request from now: no statement timeout, no hold."""
    budget = DatabaseBudget(int(settings.DATABASE_PAGE_BUDGET_MS) / 1000, page=True)
    token = _budget.set(budget)
    try:
        yield budget
    finally:
        _budget.reset(token)


@contextmanager
def _request_budget() -> Iterator[DatabaseBudget]:
    """The budget of one bounded request from now, and the fast-fail hold's say on it."""
    started = monotonic()
    hold = int(settings.DATABASE_REQUEST_FAST_FAIL_MS) / 1000
    passage = fast_fail.enter() if hold > 0 else Passage.OPEN
    budget = DatabaseBudget(
        int(settings.DATABASE_REQUEST_BUDGET_MS) / 1000, started=started, held=passage is Passage.HELD
    )
    token = _budget.set(budget)
    try:
        yield budget
    finally:
        _budget.reset(token)
        if hold > 0:
            fast_fail.leave(passage, budget, hold=hold)


class _InputOffTheClock:
    """The request's body as the WSGI server reads it from the client, the time spent waiting for it added
    to the deadline: a client slow to send its body is not the database's fault (with sync workers and no
    buffering proxy in front, the body arrives while the view reads it)."""

    def __init__(self, stream: Any, budget: DatabaseBudget) -> None:
        self._stream = stream
        self._budget = budget

    def _timed(self, read: Callable[..., Any], *args: Any) -> Any:
        started = monotonic()
        try:
            return read(*args)
        finally:
            self._budget.deadline += monotonic() - started

    def read(self, *args: Any) -> bytes:
        return self._timed(self._stream.read, *args)  # type: ignore[no-any-return]

    def readline(self, *args: Any) -> bytes:
        return self._timed(self._stream.readline, *args)  # type: ignore[no-any-return]

    def readlines(self, *args: Any) -> list[bytes]:
        return self._timed(self._stream.readlines, *args)  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def bounded_wsgi(application: Callable[..., Any]) -> Callable[..., Any]:
    """The WSGI application with the request's budget (a bounded request's, or a page's) starting as the
    request reaches it: before Django's ``request_started`` (its check of a persistent connection) and
    around the response's ``close()`` (``request_finished``: the same checks, after the answer, still holding
    the worker; for a page, with a deadline of its own from there)."""

    def bounded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("SCRIPT_NAME", "").rstrip("/") + environ.get("PATH_INFO", "")
        if _bounds_apply(path):
            budgeted = _request_budget
        elif _page_budget_applies(path):
            budgeted = _page_budget
        else:
            return application(environ, start_response)  # type: ignore[no-any-return]
        with budgeted() as budget:
            environ["wsgi.input"] = _InputOffTheClock(environ["wsgi.input"], budget)
            response = application(environ, start_response)
        close = getattr(response, "close", None)
        if close is not None:

            def close_within_budget() -> None:
                closing = DatabaseBudget(budget.seconds, page=True) if budget.page else budget
                token = _budget.set(closing)
                try:
                    close()
                finally:
                    _budget.reset(token)

            response.close = close_within_budget
        return response  # type: ignore[no-any-return]

    return bounded


def _bounded_paths() -> tuple[str, ...]:
    return tuple(settings.DATABASE_BOUNDED_PATHS)


class RequestPathTimeoutMiddleware:
    """Sets the statement timeouts of the path; gives the request its budget (a bounded request's or a
    page's) when no WSGI server started it already (:func:`bounded_wsgi`): under the test client, for
    instance."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if connection.vendor != "postgresql":
            return self.get_response(request)
        bounded = request.path.startswith(_bounded_paths())
        if database_budget() is not None:
            budgeted = None
        elif _bounds_apply(request.path):
            budgeted = _request_budget
        elif _page_budget_applies(request.path):
            budgeted = _page_budget
        else:
            budgeted = None
        if budgeted is None:
            self._apply(bounded=bounded)
            return self.get_response(request)
        with budgeted():
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
