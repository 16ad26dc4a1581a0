"""The request side of webhook intake: find the account by its token, store the delivery, enqueue it.

Everything here runs inside Kommo's 2-second window, so it does the least that keeps a delivery safe:
one constant-time token match (against an in-process copy of the accounts' tokens), a look at the keys of
the body (:func:`~apps.kommo.webhooks.parser.route`), one INSERT, and a task sent after the commit (at
most one per account per ``KOMMO_WEBHOOK_ENQUEUE_WINDOW_MS`` from a process, longer under a flood: see
:class:`_Doorbell`).
"""

from __future__ import annotations

import functools
import hmac
import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import psycopg
from celery import current_app
from django.conf import settings
from django.db import OperationalError, connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http.request import HttpHeaders
from django.utils import timezone

from apps.core.broker import publish_or_log
from apps.kommo.models import KommoAccount, WebhookEvent
from apps.kommo.webhooks.parser import Kind, Routing, WebhookParseError, route

PROCESS_TASK = "apps.kommo.tasks.webhook_process"
ACCOUNTS_TTL = 5.0  # seconds an in-process copy of the accounts' tokens is trusted
# Request headers never stored with an event: Kommo sends none of them, and they may hold secrets.
UNSTORED_HEADERS = frozenset({"cookie", "authorization", "proxy-authorization"})
UNPREFIXED_HEADERS = frozenset(HttpHeaders.UNPREFIXED_HEADERS)  # CONTENT_TYPE, CONTENT_LENGTH (PEP 3333)


@dataclass(frozen=True)
class AccountRef:
    """What intake needs of an account: its key, and what the body's account block must match."""

    id: int
    kommo_id: int | None
    subdomain: str
    webhook_token: str


class _TokenCache:
    def __init__(self) -> None:
        self._accounts: tuple[AccountRef, ...] = ()
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def _load(self) -> tuple[AccountRef, ...]:
        rows = KommoAccount.objects.values_list("id", "kommo_id", "subdomain", "webhook_token")
        accounts = tuple(AccountRef(*row) for row in rows)
        with self._lock:
            self._accounts, self._loaded_at = accounts, time.monotonic()
        return accounts

    def find(self, token: str) -> AccountRef | None:
        accounts = self._accounts
        if time.monotonic() - self._loaded_at > ACCOUNTS_TTL:
            accounts = self._load()
        found = _match(accounts, token)
        if found is None:  # an account created since the copy was taken
            found = _match(self._load(), token)
        return found


def _match(accounts: tuple[AccountRef, ...], token: str) -> AccountRef | None:
    """Compares ``token`` with every account's token in constant time, without stopping at a match."""
    given = token.encode()
    found = None
    for account in accounts:
        if hmac.compare_digest(account.webhook_token.encode(), given):
            found = account
    return found


_tokens = _TokenCache()


def webhook_account_for_token(token: str) -> AccountRef | None:
    """The account whose webhook token is ``token``, or None."""
    return _tokens.find(token)


# Deliveries of one account within one window (after the publish that opened it) that make the account's
# next window the flood window: a paced stream (one a window) never lengthens it.
FLOOD_RINGS = 5


class _Doorbell:
    """At most one processing task per account per window from this process.

    A task claims every waiting event of its account, so one task published after an event's commit is
    enough for it and for the others of that account committed before the task claims. An event whose
    account rang less than a window ago gets a task published when the window ends, unless one is
    already due: every committed event is followed by a publish within the account's current window; a
    burst costs one publish per window instead of one per delivery.

    The window is ``window`` (``KOMMO_WEBHOOK_ENQUEUE_WINDOW_MS``) while an account is calm. When
    :data:`FLOOD_RINGS` or more deliveries came within one window, the account's next window is
    ``flood_window`` (``KOMMO_WEBHOOK_ENQUEUE_FLOOD_WINDOW_MS``), and stays so while each window holds as
    many; a window holding fewer, or a delivery after a window that held none, returns it to ``window``.
    A flood then costs a few publishes a second (about 2 ms of CPU each) instead of one per ``window``.

    The publishes due later are sent by one thread of the process, started when first needed (and again
    in a forked child), which sleeps until the next one is due. A timer thread per window cost about as
    much CPU again as the publish it made: starting the thread, and Celery's per-thread state (its result
    backend) set up anew for each publish (docs/webhooks.md).
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # the parent's thread does not exist in a child

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._last: dict[int, float] = {}
        self._due: dict[int, tuple[float, int]] = {}  # account id → (when, the event to name)
        self._rings: dict[int, int] = {}  # account id → deliveries in the window its due publish ends
        self._flooded: set[int] = set()  # accounts whose current window is the flood window
        self._thread: threading.Thread | None = None

    def ring(
        self, *, account_id: int, event_id: int, window: float, flood_window: float | None = None
    ) -> None:
        now = time.monotonic()
        with self._lock:
            if account_id in self._due:
                self._rings[account_id] += 1
                return
            if account_id in self._flooded and flood_window is not None:
                window = flood_window
            wait = self._last.get(account_id, float("-inf")) + window - now
            if wait <= 0:  # nothing came within the window: the account is calm
                self._last[account_id] = now
                self._flooded.discard(account_id)
            else:
                self._due[account_id] = (now + wait, event_id)
                self._rings[account_id] = 1
                self._started()
                self._changed.notify()
        if wait <= 0:
            _publish(event_id)

    def _started(self) -> None:
        """Starts the thread that publishes what is due, unless it runs (called holding the lock)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="webhook-doorbell", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                account_id, event_id = self._next_due()
                del self._due[account_id]
                self._last[account_id] = time.monotonic()
                if self._rings.pop(account_id) >= FLOOD_RINGS:
                    self._flooded.add(account_id)
                else:
                    self._flooded.discard(account_id)
            _publish(event_id)

    def _next_due(self) -> tuple[int, int]:
        """Waits (holding the lock between its waits) until a publish is due; its account and event."""
        while True:
            if not self._due:
                self._changed.wait()
                continue
            account_id, (when, event_id) = min(self._due.items(), key=lambda due: due[1][0])
            left = when - time.monotonic()
            if left <= 0:
                return account_id, event_id
            self._changed.wait(left)


def _publish(event_id: int) -> None:
    """The request's publish: a broker that is down is logged, never raised (the row is committed, and
    the sweeper publishes for it within ``KOMMO_WEBHOOK_UNQUEUED_AFTER_SECONDS`` of the broker's return)."""
    publish_or_log(partial(webhook_event_enqueue, event_id=event_id), what=f"webhook event {event_id}")


_doorbell = _Doorbell()


def _enqueue_window() -> float:
    return float(settings.KOMMO_WEBHOOK_ENQUEUE_WINDOW_MS) / 1000


def _enqueue_flood_window() -> float:
    return float(settings.KOMMO_WEBHOOK_ENQUEUE_FLOOD_WINDOW_MS) / 1000


def account_mismatch(account: AccountRef, routing: Routing) -> str:
    """Why the body's account block does not belong to ``account``; "" when it does (or is absent)."""
    claimed_id = (routing.account_id or "").strip()
    if claimed_id and account.kommo_id is not None and claimed_id != str(account.kommo_id):
        return f"the body names account id {claimed_id!r}, the token belongs to account {account.kommo_id}"
    claimed = (routing.subdomain or "").strip().lower()
    if claimed and account.subdomain and claimed != account.subdomain.strip().lower():
        return f"the body names subdomain {claimed!r}, the token belongs to {account.subdomain!r}"
    return ""


def webhook_event_record(*, account: AccountRef, body: bytes, meta: Mapping[str, Any]) -> int:
    """Stores one delivery as received and, when it is for this account and readable, enqueues it.

    ``meta`` is the request's WSGI environment (``request.META``): its headers, content type and remote
    address are stored with the body. Returns the stored event's id.

    An unreadable body is stored as ``failed`` and a body naming another account as ``rejected``: both
    are kept for inspection and never processed on their own.
    """
    content_type = meta.get("CONTENT_TYPE", meta.get("HTTP_CONTENT_TYPE", ""))
    status, error = WebhookEvent.Status.RECEIVED, ""
    try:
        routing = route(body, content_type)
    except WebhookParseError as exc:
        routing = Routing(account_id=None, subdomain=None, events=(), kind=Kind.GENERAL)
        status, error = WebhookEvent.Status.FAILED, f"unreadable body: {exc}"
    else:
        mismatch = account_mismatch(account, routing)
        if mismatch:
            status, error = WebhookEvent.Status.REJECTED, mismatch
    stored = stored_headers(meta)
    event_id = _insert_event(
        {
            "account_id": account.id,
            "body": body,
            "content_type": _text(content_type)[:200],
            "headers": stored,
            "remote_addr": meta.get("REMOTE_ADDR") or None,
            "request_id": stored.get("x-amocrm-requestid", "")[:100],
            "kind": routing.kind.value,
            "events": _text(" ".join(routing.events))[:255],
            "status": status.value,
            "attempts": 0,
            "error": _text(error),
            "traceback": "",
            "received_at": timezone.now(),
            "claimed_at": None,
            "heartbeat_at": None,
            "retry_at": None,
            "processed_at": None,
        }
    )
    if status == WebhookEvent.Status.RECEIVED:
        # After the commit: at once in autocommit, at the end of an enclosing transaction otherwise.
        ring = partial(
            _doorbell.ring,
            account_id=account.id,
            event_id=event_id,
            window=_enqueue_window(),
            flood_window=_enqueue_flood_window(),
        )
        transaction.on_commit(ring)
    return event_id


def _text(value: str) -> str:
    """``value`` fit for a text or jsonb column: PostgreSQL refuses NUL, and a lone surrogate cannot be
    encoded; each becomes U+FFFD. For the headers and the content type (the parser refuses both in keys and
    account values); the body is kept as bytes, as received."""
    if value.isascii() and "\x00" not in value:
        return value
    cleaned = value.replace("\x00", "\ufffd")
    return cleaned.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def stored_headers(meta: Mapping[str, Any]) -> dict[str, str]:
    """The request's headers as an event stores them: named in lower case as sent ("x-amocrm-requestid"),
    without ``UNSTORED_HEADERS``, each name and value fit for jsonb (:func:`_text`) — what Django's
    ``request.headers`` gives, named in lower case, read from ``meta`` (``request.META``) in one pass
    without building it (its per-header work was a tenth of what the request costs beyond its INSERT)."""
    stored: dict[str, str] = {}
    for key, value in meta.items():
        if key.startswith("HTTP_"):
            name = key[5:]
        elif key in UNPREFIXED_HEADERS:
            name = key
        else:
            continue
        if not name.isascii():  # never from gunicorn, which takes only ASCII names: named as Django does
            return _stored_of(HttpHeaders(meta))
        name = name.replace("_", "-").lower()
        if name and name not in UNSTORED_HEADERS:
            stored[_text(name)] = _text(value)
    return stored


def _stored_of(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        _text(name.lower()): _text(value)
        for name, value in headers.items()
        if name.lower() not in UNSTORED_HEADERS
    }


def _insert_event(row: dict[str, Any]) -> int:
    """Writes one ``WebhookEvent`` row (every column given, by attribute name) and returns its id.

    On PostgreSQL this is one ``INSERT … RETURNING id`` with server-side parameters, which psycopg
    prepares on a connection once it has run ``DATABASE_PREPARE_THRESHOLD`` times there. The ORM's
    compilation of the same INSERT costs more CPU than the rest of the request together, and this is the
    statement of every delivery (figures in docs/webhooks.md). Elsewhere (SQLite for ``make run``) the
    ORM writes it.
    """
    connection = connections[router.db_for_write(WebhookEvent)]
    if connection.vendor != "postgresql":
        return int(WebhookEvent.objects.create(**row).pk)
    # A str goes out untyped and PostgreSQL reads it as the column's type: jsonb here, as Jsonb() would
    # give, without its adaptation cost.
    values = [json.dumps(value) if name == "headers" else value for name, value in row.items()]
    sql = _insert_sql(tuple(row))
    try:
        return _execute_insert(connection, sql, values)
    except OperationalError:
        # This cursor bypasses Django's per-request health check (CONN_HEALTH_CHECKS), which would cost a
        # query per delivery. A persistent connection the server closed (a restart) fails here instead:
        # reconnect and insert once more. Outside a transaction only, and only when the connection is dead
        # (a statement timeout leaves it usable and is raised). A commit lost with its connection would
        # store the delivery twice, which processing absorbs like any duplicate delivery.
        if connection.in_atomic_block or connection.is_usable():
            raise
        connection.close()
        return _execute_insert(connection, sql, values)


def _execute_insert(connection: BaseDatabaseWrapper, sql: str, values: list[Any]) -> int:
    connection.ensure_connection()
    with connection.wrap_database_errors:
        cursor = psycopg.Cursor(connection.connection)
        cursor.execute(sql, values)
        found = cursor.fetchone()
    assert found is not None  # RETURNING always returns the row
    return int(found[0])


@functools.cache
def _insert_sql(names: tuple[str, ...]) -> str:
    opts = WebhookEvent._meta
    column = {field.attname: field.column for field in opts.concrete_fields}
    columns = ", ".join(f'"{column[name]}"' for name in names)
    placeholders = ", ".join(["%s"] * len(names))
    # Only the model's own table and column names are interpolated; every value is a parameter.
    return f'INSERT INTO "{opts.db_table}" ({columns}) VALUES ({placeholders}) RETURNING "{opts.pk.column}"'  # noqa: S608


def webhook_event_enqueue(*, event_id: int, countdown: float | None = None) -> None:
    """Sends the processing task for one event (routed to the ``webhooks`` queue by its name)."""
    current_app.send_task(PROCESS_TASK, args=(event_id,), countdown=countdown)
