"""Run the sandbox: a threaded WSGI server around :class:`~kommo_sandbox.app.SandboxApp`.

``SandboxServer(host="127.0.0.1", port=0, seed="demo").start()`` serves in a background thread; tests use
``.base_url``, ``.credentials``, ``.store`` and ``.stop()``. The management command ``kommo_sandbox`` runs the
same server in the foreground.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from kommo_sandbox.app import SandboxApp
from kommo_sandbox.auth import Integration
from kommo_sandbox.seed import parse_seed, seed_account
from kommo_sandbox.store import SandboxStore, account_from_json, account_to_json

logger = logging.getLogger(__name__)

DEFAULT_REDIRECT_URI = "http://127.0.0.1:8000/kommo/oauth/callback"
DEFAULT_SUBDOMAIN = "sandbox"


@dataclass
class Credentials:
    """What a client needs to talk to the sandbox; written to ``--credentials-file`` as JSON."""

    base_url: str
    subdomain: str
    account_id: int
    long_lived_token: str
    client_id: str
    client_secret: str
    redirect_uri: str
    admin_token: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)


class SandboxServer:
    """A Kommo sandbox on ``host:port`` (``port=0``: any free port).

    ``credentials`` may carry fixed secrets (``long_lived_token``, ``client_id``, ``client_secret``,
    ``redirect_uri``, ``admin_token``, ``account_id``, ``subdomain``); missing ones are generated.
    With ``state_file`` the store is loaded from it when it exists and saved to it while running.
    ``webhooks`` wires the webhook sender to the store's change bus (``webhook_options`` go to it).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: str = "demo",
        credentials: dict[str, Any] | None = None,
        state_file: str | Path | None = None,
        webhooks: bool = True,
        webhook_options: dict[str, Any] | None = None,
        snapshot_interval: float = 2.0,
    ) -> None:
        self.host = host
        self.port = port
        self.seed = parse_seed(seed)
        self.state_file = Path(state_file) if state_file else None
        self.snapshot_interval = snapshot_interval
        self.store = SandboxStore()
        given = dict(credentials or {})
        self._loaded = self.state_file is not None and self.state_file.exists()
        if self._loaded:
            assert self.state_file is not None
            self.store.load(self.state_file)
        account_id = given.get("account_id")
        subdomain = given.get("subdomain", DEFAULT_SUBDOMAIN)
        if not self._loaded:
            seed_account(self.store, self.seed, subdomain=subdomain, account_id=account_id)
        account = self.store.account(self.store.default_account_id or 0)
        self._seed_snapshot = account_to_json(account) if not self._loaded else None
        self.credentials_obj = Credentials(
            base_url="",
            subdomain=account.subdomain,
            account_id=account.id,
            long_lived_token=given.get("long_lived_token") or "",
            client_id=given.get("client_id") or str(uuid.uuid4()),
            client_secret=given.get("client_secret") or secrets.token_urlsafe(48),
            redirect_uri=given.get("redirect_uri") or DEFAULT_REDIRECT_URI,
            admin_token=given.get("admin_token") or secrets.token_urlsafe(24),
        )
        auth = self.store.auth
        auth.add_integration(
            Integration(
                self.credentials_obj.client_id,
                self.credentials_obj.client_secret,
                self.credentials_obj.redirect_uri,
            )
        )
        self.credentials_obj.long_lived_token = auth.add_long_lived(
            account.id, account.admin_user.id, self.credentials_obj.long_lived_token or None
        )
        self.app = SandboxApp(self.store, self.credentials_obj.admin_token, reseed=self.reseed)
        self.sender: Any = None
        self._webhooks = webhooks
        self._webhook_options = webhook_options or {}
        self._httpd: _ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._saver: threading.Thread | None = None
        self._stop_saver = threading.Event()

    # --- lifecycle ----------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self.credentials_obj.base_url

    @property
    def credentials(self) -> dict[str, Any]:
        return self.credentials_obj.as_dict()

    def start(self) -> SandboxServer:
        self._httpd = make_server(
            self.host, self.port, self.app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        )
        host, port = self._httpd.server_address[:2]
        if not isinstance(host, str):  # an IPv4/IPv6 server's address is a str; the stubs also allow bytes
            host = bytes(host).decode("ascii")
        self.port = int(port)
        self.credentials_obj.base_url = f"http://{host}:{self.port}"
        self.store.origin = self.credentials_obj.base_url
        if self._webhooks:
            self._attach_webhook_sender()
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="kommo-sandbox", daemon=True)
        self._thread.start()
        if self.state_file is not None:
            self._saver = threading.Thread(target=self._save_loop, name="kommo-sandbox-snapshot", daemon=True)
            self._saver.start()
        logger.info("Kommo sandbox listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        self.app.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
        if self.sender is not None:
            self.sender.stop()
        self._stop_saver.set()
        if self._saver is not None:
            self._saver.join(5)
        if self.state_file is not None:
            self.store.save(self.state_file)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def write_credentials(self, path: str | Path) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.credentials, indent=2) + "\n", encoding="utf-8")

    # --- pieces ---------------------------------------------------------------------------------------------

    def _attach_webhook_sender(self) -> None:
        try:
            from kommo_sandbox.webhooks import WebhookSender
        except ImportError:
            logger.warning("The webhook sender is not available: webhooks will not be delivered")
            return
        self.sender = WebhookSender(source=self.store, **self._webhook_options)
        self.store.bus.subscribe(self.sender.enqueue)
        self.app.webhook_deliveries = self.sender.deliveries

    def reseed(self, account_id: int) -> None:
        """Restore the seeded account to what it was right after seeding (ids included)."""
        with self.store.lock:
            if self._seed_snapshot is not None and self._seed_snapshot["id"] == account_id:
                self.store.accounts[account_id] = account_from_json(
                    json.loads(json.dumps(self._seed_snapshot))
                )
            else:
                fresh = SandboxStore()
                rebuilt = seed_account(fresh, self.seed, subdomain=self.store.account(account_id).subdomain)
                rebuilt.id = account_id
                self.store.accounts[account_id] = rebuilt
            self.store.touch()

    def _save_loop(self) -> None:
        assert self.state_file is not None
        saved = self.store.version
        while not self._stop_saver.wait(self.snapshot_interval):
            if self.store.version != saved:
                saved = self.store.version
                try:
                    self.store.save(self.state_file)
                except OSError:
                    logger.exception("Could not save the sandbox state to %s", self.state_file)
