"""Test doubles and fixture readers for the webhook sender's tests."""

from __future__ import annotations

import json
import shlex
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_plus

from kommo_sandbox.changes import Subscription

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "kommo" / "webhooks"

Pair = tuple[str, str]


# --- fixtures ---------------------------------------------------------------------------------------------


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def decode_form(body: str) -> list[Pair]:
    """A form body as (key, value) pairs in wire order (keys and values URL-decoded)."""
    return [(unquote_plus(k), unquote_plus(v)) for k, v in (part.split("=", 1) for part in body.split("&"))]


def curl_pairs(name: str) -> list[Pair]:
    """The (key, value) pairs of a curl replay: ``--data-urlencode 'key=value'`` with pre-encoded keys."""
    args = shlex.split(fixture_bytes(name).decode().replace("\\\n", " "))
    data = [args[i + 1] for i, arg in enumerate(args) if arg == "--data-urlencode"]
    return [(unquote(k), v) for k, v in (item.split("=", 1) for item in data)]


def curl_headers(name: str) -> dict[str, str]:
    args = shlex.split(fixture_bytes(name).decode().replace("\\\n", " "))
    headers = [args[i + 1] for i, arg in enumerate(args) if arg == "--header"]
    return {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in headers)}


def doc_pairs(name: str) -> list[Pair]:
    """A documentation rendering (decoded JSON) flattened back to bracket keys in document order."""

    def flatten(prefix: str, value: Any) -> list[Pair]:
        if isinstance(value, dict):
            return [p for k, v in value.items() for p in flatten(f"{prefix}[{k}]" if prefix else k, v)]
        if isinstance(value, list):
            return [p for i, v in enumerate(value) for p in flatten(f"{prefix}[{i}]", v)]
        return [(prefix, value)]

    return flatten("", json.loads(fixture_bytes(name)))


def uuid4_like(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text and uuid.UUID(text).version == 4
    except ValueError:
        return False


# --- a webhook source -------------------------------------------------------------------------------------


@dataclass
class FakeSource:
    """A :class:`~kommo_sandbox.changes.WebhookSource` held in memory."""

    subdomain: str = "acme"
    subscriptions: list[Subscription] = field(default_factory=list)
    dp: dict[tuple[int, int], list[str]] = field(default_factory=dict)  # (pipeline, status) -> URLs
    drops: int = 0  # how many of the next deliveries to drop
    disabled_calls: list[tuple[int, str, bool]] = field(default_factory=list)
    before_account_block: Callable[[], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def account_block(self, account_id: int) -> dict[str, str]:
        if self.before_account_block:
            self.before_account_block()
        return {
            "subdomain": self.subdomain,
            "id": str(account_id),
            "self": f"https://{self.subdomain}.kommo.com",
        }

    def webhook_subscriptions(self, account_id: int) -> list[Subscription]:
        with self._lock:
            return list(self.subscriptions)

    def webhook_set_disabled(self, account_id: int, destination: str, disabled: bool) -> None:
        with self._lock:
            self.disabled_calls.append((account_id, destination, disabled))
            for subscription in self.subscriptions:
                if subscription.destination == destination:
                    subscription.disabled = disabled

    def dp_destinations(
        self, account_id: int, pipeline_id: int, status_id: int, trigger: str = "status"
    ) -> list[str]:
        return list(self.dp.get((pipeline_id, status_id), [])) if trigger == "status" else []

    def should_drop_webhook(self, account_id: int) -> bool:
        with self._lock:
            if self.drops:
                self.drops -= 1
                return True
            return False


# --- a webhook receiver -----------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """An HTTP server on 127.0.0.1 that records POSTs and answers ``status`` (after ``delay`` seconds, or
    once ``gate`` is set when one is given)."""

    def __init__(self, status: int = 200, delay: float = 0.0, gate: threading.Event | None = None) -> None:
        self.status = status
        self.delay = delay
        self.gate = gate
        self.requests: list[Received] = []
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._arrived:
                    receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                    receiver._arrived.notify_all()
                if receiver.gate is not None:
                    receiver.gate.wait(10)
                elif receiver.delay:
                    time.sleep(receiver.delay)
                try:
                    self.send_response(receiver.status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender gave up waiting

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/hooks/kommo?token=t0k3n"

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.requests) >= count, timeout)
            return list(self.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
