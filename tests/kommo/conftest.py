"""Fixtures for the Kommo client tests.

``kommo`` runs a test twice: against the suite's fake Kommo (tests/support/fake_kommo.py) holding what the
recorded payloads of tests/fixtures/kommo/api/ show, and against a live Kommo sandbox
(``kommo_sandbox.server.SandboxServer`` on 127.0.0.1, demo seed, connected through its long-lived token).
So any disagreement between our reading of Kommo and the emulation fails a test.

``kommo.expects(method, path)`` names a call the test makes: against the fake, the calls made must be
exactly those named, in order (a call named and not made fails, and so does one made and not named);
against the sandbox it does nothing. ``kommo.fails_next(...)`` makes the fake answer the next call to a
route with a recorded error; the sandbox answers for itself.
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
from tests.support.fake_kommo import FakeKommo

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
    fake: FakeKommo | None = None
    server: Any = None
    expected: list[str] = field(default_factory=list)

    @property
    def live(self) -> bool:
        return self.mode == "sandbox"

    def expects(self, method: str, path: str) -> None:
        """The test calls ``method path`` (once more); checked against the fake when the test ends."""
        self.expected.append(f"{method} {path}")

    def fails_next(self, method: str, route: str, status: int, body: Any) -> None:
        """The fake answers the next call to ``route`` (a plain path) with this error; the sandbox
        answers for itself."""
        self.expects(method, route)
        if self.fake is not None:
            self.fake.answer_next(route, status, body)

    def made(self) -> list[str]:
        """The calls the fake answered, as ``METHOD /path``."""
        assert self.fake is not None
        return [call.split("?", 1)[0] for call in self.fake.calls]

    def store_account(self) -> Any:
        return self.server.store.account(self.server.credentials["account_id"])


@pytest.fixture(params=["recorded", "sandbox"])
def kommo(request: pytest.FixtureRequest, make_account: Any, sleeps: Sleeps) -> Iterator[Kommo]:
    if request.param == "recorded":
        account = make_account()
        limiter: RateLimiter = request.getfixturevalue("limiter")
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            fake = FakeKommo(mock, account.api_root).load_recordings()
            fake.token = account.access_token
            client = KommoClient(account, limiter=limiter, sleep=sleeps, retry=RetryPolicy(max_attempts=2))
            kommo = Kommo("recorded", client, account, fake=fake)
            yield kommo
            assert not fake.unrouted, f"calls the fake Kommo has no answer for: {fake.unrouted}"
        assert kommo.made() == kommo.expected, "the calls made are not the calls the test names"
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
