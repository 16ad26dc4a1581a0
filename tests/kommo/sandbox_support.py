"""The Kommo sandbox over real HTTP: a server on a free port, an account row connected to it with a
long-lived token, and the fixtures the suite shares (registered for every test by tests/conftest.py):

- ``demo`` / ``fresh_demo``: one demo sandbox per module (no webhooks, rate limit off), reset to its seed
  for each test that asks for the fresh one;
- ``webhook_sandbox``: a demo sandbox that sends webhooks, new for each test, with ``webhook_portal`` (the
  live server as the webhook URL) and :func:`account_subscribed` (the account, subscribed);
- ``gated_portal``: the portal connected to a demo sandbox that sends its webhooks, once per module, as
  ``make run`` prepares it (fields, webhook subscription, sync, the default gate rules enforced), a real
  Celery worker on Redis and PostgreSQL, the live server as the webhook URL. Its tests share that one
  database: their flush is held back until the module ends (see :func:`database_kept_for_the_module`), so
  each test picks records no earlier test of the module used.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from apps.kommo.models import KommoAccount
from kommo_sandbox.server import SandboxServer
from tests.factories import KommoAccountFactory
from tests.support.services import CeleryWorker, RedisServer


def sandbox_start(seed: str, *, webhooks: bool = False) -> SandboxServer:
    """A sandbox with ``seed`` whose rate limit is off (tests count calls; timings are for benchmarks)."""
    server = SandboxServer(host="127.0.0.1", port=0, seed=seed, webhooks=webhooks).start()
    sandbox_admin(server, "PUT", "/_sandbox/rate-limit", {"enabled": False})
    return server


def sandbox_admin(server: SandboxServer, method: str, path: str, body: Any = None) -> Any:
    response = requests.request(
        method,
        server.base_url + path,
        json=body,
        headers={"Authorization": f"Bearer {server.credentials['admin_token']}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json() if response.content else None


def sandbox_api(
    server: SandboxServer, method: str, path: str, body: Any = None, token: str | None = None
) -> Any:
    """A call to the sandbox's Kommo API as a Kommo user (the admin unless ``token`` says otherwise)."""
    response = requests.request(
        method,
        server.base_url + path,
        json=body,
        headers={"Authorization": f"Bearer {token or server.credentials['long_lived_token']}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json() if response.content else None


def account_for(server: SandboxServer, *, rate_limit_per_second: float = 1000.0) -> KommoAccount:
    return KommoAccountFactory.create(
        name="Sandbox",
        base_url=server.base_url,
        auth_kind=KommoAccount.AuthKind.LONG_LIVED,
        access_token=server.credentials["long_lived_token"],
        rate_limit_per_second=rate_limit_per_second,
    )


def api_requests(server: SandboxServer, since: int = 0) -> list[dict[str, Any]]:
    """The Kommo API calls the sandbox answered after request number ``since`` (admin calls left out)."""
    return [
        entry for entry in server.app.request_log.entries(since=since) if entry["path"].startswith("/api/v4/")
    ]


def minimum_full_sync_calls(server: SandboxServer) -> int:
    """The fewest calls a full sync of the sandbox's default account can make: every list read in pages
    of its largest size (250; custom fields 50), an empty list costing one call (204)."""
    account = server.store.account(server.store.default_account_id or 0)

    def pages(count: int, size: int = 250) -> int:
        return max(1, math.ceil(count / size))

    live = [lead for lead in account.leads.values() if not lead.is_deleted]
    calls = 1  # pipelines
    calls += pages(len(account.users))
    for entity in ("leads", "contacts", "companies"):
        calls += pages(len(account.fields_for(entity)), 50)
    calls += 1  # catalogs
    for catalog_id in account.catalogs:
        calls += pages(len(account.fields_for("catalogs", catalog_id)), 50)
        elements = [e for e in account.elements.values() if e.catalog_id == catalog_id and not e.is_deleted]
        calls += pages(len(elements))
    calls += pages(len([c for c in account.companies.values() if not c.is_deleted]))
    calls += pages(len([c for c in account.contacts.values() if not c.is_deleted]))
    calls += pages(len(live))
    return calls


# -- fixtures shared by the suite ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> Iterator[SandboxServer]:
    """The demo sandbox shared by a module's tests (no webhooks, rate limit off)."""
    server = sandbox_start("demo")
    yield server
    server.stop()


@pytest.fixture
def fresh_demo(demo: SandboxServer) -> SandboxServer:
    """The module's demo sandbox, reset to its seed."""
    sandbox_admin(demo, "POST", "/_sandbox/reset")
    return demo


@pytest.fixture
def webhook_sandbox() -> Iterator[SandboxServer]:
    """A demo sandbox that sends webhooks (rate limit off), new for the test: the tests that use it block
    the account, slow Kommo down or kill a worker mid-delivery, and a retry still pending in one test's
    sender must not reach the next test's portal."""
    server = sandbox_start("demo", webhooks=True)
    yield server
    server.stop()


@pytest.fixture
def webhook_portal(transactional_db: None, live_server: Any, settings: Any) -> Any:
    """The portal over HTTP (the live server), the URL its webhook subscriptions name."""
    settings.KOMMO_PUBLIC_URL = live_server.url
    return live_server


def account_subscribed(server: SandboxServer, settings: Iterable[str] = ("status_lead",)) -> KommoAccount:
    """The sandbox's account in the portal, subscribed to ``settings`` (Kommo's event names) at its
    webhook URL."""
    credentials = server.credentials
    account = KommoAccountFactory.create(
        name="Sandbox",
        base_url=server.base_url,
        subdomain=credentials["subdomain"],
        kommo_id=credentials["account_id"],
        auth_kind=KommoAccount.AuthKind.LONG_LIVED,
        access_token=credentials["long_lived_token"],
        rate_limit_per_second=1000,
    )
    sandbox_api(
        server, "POST", "/api/v4/webhooks", {"destination": account.webhook_url, "settings": list(settings)}
    )
    return account


@pytest.fixture(scope="module")
def database_kept_for_the_module(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """The module's transactional tests share one database: the flush that ends each of them is held back
    until the module ends, then done once (and the migrations' content put back, as serialized rollback
    does), so that a costly world is built once per module rather than once per test."""
    from django.core.management import call_command
    from django.db import connection
    from django.test import TransactionTestCase

    # A private hook of Django's test case, so getattr/setattr: the stubs do not declare it.
    flush = getattr(TransactionTestCase, "_fixture_teardown")  # noqa: B009
    setattr(TransactionTestCase, "_fixture_teardown", lambda self: None)  # noqa: B010
    try:
        yield
    finally:
        setattr(TransactionTestCase, "_fixture_teardown", flush)  # noqa: B010
        contents = getattr(connection, "_test_serialized_contents", None)
        with django_db_blocker.unblock():
            call_command("flush", verbosity=0, interactive=False, inhibit_post_migrate=bool(contents))
            if contents:
                connection.creation.deserialize_db_from_string(contents)


@dataclass
class GatedPortal:
    account: KommoAccount
    sandbox: SandboxServer
    worker: CeleryWorker
    url: str


@pytest.fixture(scope="module")
def gated_portal(
    database_kept_for_the_module: None,
    django_db_blocker: Any,
    live_server: Any,
    redis_server: RedisServer,
) -> Iterator[GatedPortal]:
    """The portal connected to a demo sandbox that sends its webhooks to the live server: stakeholder fields
    mapped, the mirror synced, the default rules enforced, a real worker on Redis and the test database."""
    from django.db import connection
    from django.test import override_settings

    from apps.gates.models import GateRule
    from apps.gates.services import gate_rules_install_defaults
    from apps.kommo.services.sync import mirror_sync
    from apps.stakeholders.bootstrap import account_bootstrap
    from config.celery import app as celery_app
    from tests.conftest import _reset_producer_pools

    sandbox = sandbox_start("demo", webhooks=True)
    public_url = override_settings(KOMMO_PUBLIC_URL=live_server.url)
    public_url.enable()
    saved_broker = celery_app.conf.broker_url, celery_app.conf.broker_transport_options
    celery_app.conf.broker_url = redis_server.url
    celery_app.conf.broker_transport_options = {"visibility_timeout": 2}
    _reset_producer_pools(celery_app)
    worker: CeleryWorker | None = None
    try:
        with django_db_blocker.unblock():
            account = account_for(sandbox)
            account_bootstrap(account=account, public_url=live_server.url)
            mirror_sync(account=account)
            gate_rules_install_defaults(account=account, mode=GateRule.Mode.ENFORCE)
            s = connection.settings_dict
            database_url = f"postgres://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"
        worker = CeleryWorker(
            broker_url=redis_server.url,
            database_url=database_url,
            extra_env={"CELERY_VISIBILITY_TIMEOUT": "2"},
        ).start()
        yield GatedPortal(account=account, sandbox=sandbox, worker=worker, url=live_server.url)
    finally:
        if worker is not None:
            worker.stop()
        sandbox.stop()
        celery_app.conf.broker_url, celery_app.conf.broker_transport_options = saved_broker
        _reset_producer_pools(celery_app)
        public_url.disable()
        import redis

        redis.Redis.from_url(redis_server.url).flushall()
