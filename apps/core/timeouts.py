"""A statement timeout for the request paths that someone waits on with a deadline of their own.

Kommo gives a webhook 2 seconds, and an intake client is told to retry on a 503. A statement stuck behind a
lock (an account row held by a token refresh, a table locked by a migration) must not hold those requests:
on the paths in ``DATABASE_BOUNDED_PATHS`` the connection's ``statement_timeout`` and ``lock_timeout`` are
``DATABASE_REQUEST_STATEMENT_TIMEOUT_MS``, and the view answers 503 when its row cannot be stored in time.
Both are needed: Django's foreign keys are checked at commit (``DEFERRABLE INITIALLY DEFERRED``), after the
statement, where only ``lock_timeout`` still applies — an INSERT whose account row is locked waits there.
Other pages (the admin's dry runs, reports) keep the server's default.

The timeout is set on the connection (session level) the first time a bounded path uses it, and reset the
first time another path does, so a process serving only webhooks pays one ``SET`` per connection, not one
per request.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse

_BOUNDED = "_portal_statement_timeout_on"  # attribute on the wrapper: the driver connection it was set on


def _bounded_paths() -> tuple[str, ...]:
    return tuple(settings.DATABASE_BOUNDED_PATHS)


class RequestPathTimeoutMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if connection.vendor == "postgresql":
            bounded = request.path.startswith(_bounded_paths())
            try:
                _apply(bounded=bounded)
            except DatabaseError:
                pass  # the database is down or stuck: the view meets it and answers for it
        return self.get_response(request)


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
