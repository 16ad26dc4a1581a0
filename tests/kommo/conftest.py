"""Fixtures for the Kommo client tests.

``kommo`` runs a test twice: against recorded payloads served by ``responses`` and against a live Kommo
sandbox (``kommo_sandbox.server.SandboxServer`` on 127.0.0.1, demo seed, connected through its
long-lived token). ``kommo.recorded(...)`` registers a recorded answer; against the sandbox it does nothing,
the live server answers. So any disagreement between our reading of Kommo and the emulation fails a test.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import responses

from apps.kommo.client import KommoClient, RetryPolicy
from apps.kommo.models import KommoAccount
from apps.kommo.ratelimit import FileSlotStore, RateLimiter
from kommo_sandbox.server import SandboxServer
from tests.factories import KommoAccountFactory

RECORDED_BASE_URL = "https://example.kommo.com"
LONG_LIVED_TOKEN = "long-lived-token-0123456789abcdef"


@dataclass
class Sleeps:
    """Stands in for time.sleep in the client: records the delays instead of waiting."""

    delays: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def limiter(tmp_path: Path) -> RateLimiter:
    return RateLimiter(FileSlotStore(tmp_path / "ratelimit"))


@pytest.fixture
def make_account(db: None) -> Any:
    def make(**fields: Any) -> KommoAccount:
        fields.setdefault("name", "Example")
        fields.setdefault("base_url", RECORDED_BASE_URL)
        fields.setdefault("auth_kind", KommoAccount.AuthKind.LONG_LIVED)
        fields.setdefault("access_token", LONG_LIVED_TOKEN)
        fields.setdefault("rate_limit_per_second", 1000)
        return KommoAccountFactory(**fields)

    return make


@pytest.fixture
def account(make_account: Any) -> KommoAccount:
    return make_account()


@pytest.fixture
def oauth_account(make_account: Any) -> KommoAccount:
    return make_account(
        auth_kind=KommoAccount.AuthKind.OAUTH,
        client_id="client-id",
        client_secret="client-secret-value",
        redirect_uri="https://portal.example.com/kommo/oauth/callback/",
        access_token="old-access-token-aaaaaaaa",
        refresh_token="old-refresh-token-bbbbbbbb",
        token_expires_at=dt.datetime.now(tz=dt.UTC) + dt.timedelta(hours=20),
    )


@pytest.fixture
def client(account: KommoAccount, limiter: RateLimiter, sleeps: Sleeps) -> KommoClient:
    return KommoClient(account, limiter=limiter, sleep=sleeps, retry=RetryPolicy(max_attempts=4))


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


# -- recorded vs live sandbox -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Any]:
    server = SandboxServer(host="127.0.0.1", port=0, seed="demo", webhooks=False).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sandbox_limiter(tmp_path_factory: pytest.TempPathFactory) -> RateLimiter:
    """One limiter for the whole session: the sandbox's buckets outlive a test."""
    return RateLimiter(FileSlotStore(tmp_path_factory.mktemp("sandbox-ratelimit")))


@dataclass
class Kommo:
    mode: str
    client: KommoClient
    account: KommoAccount
    mock: responses.RequestsMock | None = None
    server: Any = None

    @property
    def live(self) -> bool:
        return self.mode == "sandbox"

    def recorded(self, method: str, path: str, **answer: Any) -> None:
        """The recorded answer to ``method path``; the live sandbox answers for itself."""
        if self.mock is not None:
            self.mock.add(method, self.account.api_root + path, **answer)

    def store_account(self) -> Any:
        return self.server.store.account(self.server.credentials["account_id"])


@pytest.fixture(params=["recorded", "sandbox"])
def kommo(request: pytest.FixtureRequest, make_account: Any, sleeps: Sleeps) -> Iterator[Kommo]:
    if request.param == "recorded":
        account = make_account()
        limiter: RateLimiter = request.getfixturevalue("limiter")
        with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
            client = KommoClient(account, limiter=limiter, sleep=sleeps, retry=RetryPolicy(max_attempts=2))
            yield Kommo("recorded", client, account, mock=mock)
        return
    server = request.getfixturevalue("sandbox")
    credentials = server.credentials
    account = make_account(
        base_url=credentials["base_url"],
        access_token=credentials["long_lived_token"],
        rate_limit_per_second=7,
    )
    client = KommoClient(account, limiter=request.getfixturevalue("sandbox_limiter"), sleep=sleeps)
    yield Kommo("sandbox", client, account, server=server)
