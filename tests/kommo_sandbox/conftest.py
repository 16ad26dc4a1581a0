"""Fixtures for the sandbox's API tests: a real server on a free loopback port, and HTTP clients for it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from kommo_sandbox.server import SandboxServer

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "kommo" / "api"


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


class Client:
    """``requests`` against the sandbox with a Bearer token; paths are relative to the base URL."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = path if path.startswith("http") else self.base_url + path
        return self.session.request(method, url, timeout=10, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, json=body, **kwargs)

    def patch(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, json=body, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, json=body, **kwargs)

    def delete(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, json=body, **kwargs)


def start_server(seed: str = "demo", *, rate_limit: bool = False, **kwargs: Any) -> SandboxServer:
    server = SandboxServer(host="127.0.0.1", port=0, seed=seed, webhooks=False, **kwargs).start()
    if not rate_limit:
        admin = Client(server.base_url, server.credentials["admin_token"])
        assert admin.put("/_sandbox/rate-limit", {"enabled": False}).status_code == 200
    return server


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    """A demo sandbox shared by a module's tests (rate limit off); tests that write make their own records."""
    server = start_server("demo")
    yield server
    server.stop()


@pytest.fixture
def api(sandbox: SandboxServer) -> Client:
    return Client(sandbox.base_url, sandbox.credentials["long_lived_token"])


@pytest.fixture
def admin(sandbox: SandboxServer) -> Client:
    return Client(sandbox.base_url, sandbox.credentials["admin_token"])
