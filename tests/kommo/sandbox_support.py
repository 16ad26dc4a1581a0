"""The Kommo sandbox over real HTTP for the sync tests: a server on a free port and an account row
connected to it with a long-lived token."""

from __future__ import annotations

import math
from typing import Any

import requests

from apps.kommo.models import KommoAccount
from kommo_sandbox.server import SandboxServer


def sandbox_start(seed: str) -> SandboxServer:
    """A sandbox with ``seed`` whose rate limit is off (tests count calls; timings are for benchmarks)."""
    server = SandboxServer(host="127.0.0.1", port=0, seed=seed, webhooks=False).start()
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
    return KommoAccount.objects.create(
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
