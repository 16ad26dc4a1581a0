"""The portal as deployed — gunicorn with config/gunicorn.py, the production settings, the suite's PostgreSQL
and Redis — under database faults, chunked bodies, and with its logs read for the webhook token."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import Group
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection, transaction

from apps.intake.models import IntakeSource, IntakeSubmission
from apps.intake.services import intake_source_key_generate
from apps.kommo.models import KommoAccount, WebhookEvent
from apps.users.models import User
from tests.kommo.webhook_support import account_for, recording
from tests.support.services import ROOT, PostgresServer, RedisServer, free_port, unavailable, wait_for

pytestmark = pytest.mark.postgres
FORM = "application/x-www-form-urlencoded"
# Kommo's deadline; a generous guard, not a timing: the timeout under test is a fraction of it.
KOMMO_WAITS = 2.0


class Gunicorn:
    def __init__(self, *, database_url: str, redis_url: str, **env: str) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        fd, name = tempfile.mkstemp(prefix="portal-gunicorn-", suffix=".log")
        self.log_path = Path(name)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", str(ROOT / "config" / "gunicorn.py")],
            cwd=ROOT,
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "config.settings.production",
                "DJANGO_SECRET_KEY": "test-only-not-secret",
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
                "DJANGO_SECURE_SSL_REDIRECT": "false",
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "CELERY_BROKER_URL": redis_url,
                "KOMMO_TOKEN_ENCRYPTION_KEY": "dGVzdC1vbmx5LWtleS1ub3Qtc2VjcmV0LTAwMDAwMDA=",
                "KOMMO_PUBLIC_URL": "http://127.0.0.1",
                "GUNICORN_BIND": f"127.0.0.1:{port}",
                "GUNICORN_WORKERS": "2",
                "GUNICORN_ACCESS_LOG": "-",
                "LOG_LEVEL": "INFO",
                **env,
            },
            stdout=fd,
            stderr=subprocess.STDOUT,
        )
        os.close(fd)
        wait_for(self._healthy, timeout=120, message=f"gunicorn\n{self.log()}")

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{self.log()}")
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log_path.unlink(missing_ok=True)


@pytest.fixture
def start_gunicorn(worker_database_url: str, redis_url: str) -> Iterator[Callable[..., Gunicorn]]:
    started: list[Gunicorn] = []

    def start(**env: str) -> Gunicorn:
        server = Gunicorn(database_url=worker_database_url, redis_url=redis_url, **env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def portal(django_db_setup: None, redis_server: RedisServer) -> Iterator[Gunicorn]:
    """One gunicorn for the tests that keep to the production settings (the statement timeout shortened to
    0.5 s for the lock test) and leave the server as they found it: starting one takes about as long as a
    test's own work on a loaded machine. Each test still has its own committed rows (``hooked``)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        unavailable("gunicorn shares the test database only on PostgreSQL")
    s = connection.settings_dict
    server = Gunicorn(
        database_url=f"postgres://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}",
        redis_url=redis_server.url,
        DATABASE_REQUEST_STATEMENT_TIMEOUT_MS="500",
    )
    yield server
    server.stop()


@pytest.fixture
def hooked(worker_database_url: str) -> KommoAccount:
    return account_for(recording("leads-status.form.txt"))


def deliver(
    server: Gunicorn,
    account: KommoAccount,
    body: Any,
    *,
    request_id: str = "",
    timeout: float = 30,
    **kwargs: Any,
) -> requests.Response:
    return requests.post(
        f"{server.url}/webhooks/kommo/{account.webhook_token}/",
        data=body,
        headers={"Content-Type": FORM, "User-Agent": "amoCRM-Webhooks/3.0", "X-Amocrm-Requestid": request_id},
        timeout=timeout,
        **kwargs,
    )


def source_key(account: KommoAccount) -> tuple[IntakeSource, str]:
    source = IntakeSource(account=account, name="Website form")
    return source, intake_source_key_generate(source=source)


def submit(server: Gunicorn, key: str, deal: str = "Acme", *, timeout: float = 30) -> requests.Response:
    body = {"deal": {"name": deal}, "contacts": [{"name": "Ann", "emails": ["ann@acme.example"]}]}
    return requests.post(
        f"{server.url}/api/v1/intake/leads",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=timeout,
    )


# -- the token in logs, chunked bodies -----------------------------------------------------------------------


def test_no_log_line_holds_the_webhook_token_and_a_chunked_body_is_stored_whole(portal, hooked) -> None:
    server = portal
    body = recording("leads-status.form.txt").body
    token = hooked.webhook_token

    answers = [
        deliver(server, hooked, body).status_code,  # 200, in the access log
        deliver(server, hooked, iter([body[:1000], body[1000:]])).status_code,  # chunked: no Content-Length
        requests.get(
            f"{server.url}/webhooks/kommo/{token}/?x=1", timeout=30
        ).status_code,  # 405, django.request
        deliver(server, hooked, b"x" * (1_048_576 + 1)).status_code,  # 413, django.request
    ]

    assert answers == [200, 200, 405, 413]
    chunked = WebhookEvent.objects.order_by("pk")[1]
    assert bytes(chunked.body) == body
    assert chunked.events == "leads[status]"
    time.sleep(0.5)  # the access log line follows the answer
    log = server.log()
    assert "/webhooks/kommo/***/" in log  # the lines were written, with the token masked
    assert "Method Not Allowed" in log  # django.request's warning line
    assert token not in log


# -- the database restarted, stuck behind a lock, or not answering ---------------------------------------


def test_a_restarted_database_gives_no_500(portal, hooked, postgres_server: PostgresServer) -> None:
    server = portal  # DATABASE_CONN_MAX_AGE: 60, production's default
    _, key = source_key(hooked)
    body = recording("leads-status.form.txt").body
    # Each of the two workers holds a persistent connection, used by the webhook's own INSERT and the ORM.
    before = [deliver(server, hooked, body).status_code for _ in range(6)]
    before += [submit(server, key).status_code for _ in range(4)]

    postgres_server.restart()
    connection.close()  # this process's own connection died with the restart too

    after = [deliver(server, hooked, body).status_code for _ in range(6)]
    after += [submit(server, key).status_code for _ in range(4)]
    assert before == [200] * 6 + [202] + [200] * 3  # the same submission: stored once, then repeated
    assert after == [200] * 10
    assert WebhookEvent.objects.count() == 12


def test_a_database_stuck_behind_a_lock_is_answered_503_in_time_and_nothing_is_stored(portal, hooked) -> None:
    server = portal  # DATABASE_REQUEST_STATEMENT_TIMEOUT_MS: 500
    _, key = source_key(hooked)
    body = recording("leads-status.form.txt").body
    assert deliver(server, hooked, body).status_code == 200  # the workers are warm, the tokens known
    assert submit(server, key).status_code == 202

    with transaction.atomic():
        # A token refresh holds its account row, a migration its table: each INSERT waits for the row's lock.
        KommoAccount.objects.select_for_update().get(pk=hooked.pk)
        IntakeSource.objects.select_for_update().filter(account=hooked).get()
        started = time.monotonic()
        webhook = deliver(server, hooked, body)
        webhook_took = time.monotonic() - started
        started = time.monotonic()
        intake = submit(server, key, deal="Acme, second deal")
        intake_took = time.monotonic() - started

    assert (webhook.status_code, webhook.headers["Retry-After"]) == (503, "60")
    assert intake.status_code == 503
    assert intake.headers["Content-Type"] == "application/problem+json"
    assert intake.json()["type"] == "/api/docs/#problem-unavailable"
    assert webhook_took < KOMMO_WAITS and intake_took < KOMMO_WAITS
    assert WebhookEvent.objects.count() == 1
    assert IntakeSubmission.objects.count() == 1
    # Once the lock is gone, the same connections store again.
    assert deliver(server, hooked, body).status_code == 200
    assert submit(server, key, deal="Acme, second deal").status_code == 202


def test_a_database_that_accepts_and_never_answers_fails_the_connection_within_the_connect_timeout(
    db: None,
) -> None:
    from django.db import connections

    silent = socket.socket()  # the kernel completes the handshake; no server ever speaks
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    settings_dict = {**connections["default"].settings_dict, "HOST": "127.0.0.1"}
    settings_dict["PORT"] = silent.getsockname()[1]
    frozen = type(connections["default"])(settings_dict, alias="frozen")
    started = time.monotonic()
    try:
        with pytest.raises(Exception) as failure:
            frozen.ensure_connection()
    finally:
        silent.close()

    assert "timeout" in str(failure.value).lower()
    assert time.monotonic() - started < 10  # DATABASE_CONNECT_TIMEOUT is 2 s; without it, no end


def served(server: Gunicorn) -> list[tuple[int, float, str]]:
    """Each answer's status, the seconds from the request reaching its worker to the answer written, and
    its path with its query, from the access log of a server started with ``SERVED``."""
    lines = re.findall(r"^served (\d+) (\d+) (.*)$", server.log(), re.MULTILINE)
    return [(int(status), int(microseconds) / 1e6, path.strip()) for status, microseconds, path in lines]


# The access log's lines for ``served``: gunicorn reads its command-line options from this variable too.
SERVED = {"GUNICORN_CMD_ARGS": "--access-logformat='served %(s)s %(D)s %(U)s %(q)s'"}


def test_a_frozen_database_is_answered_503_within_the_budget_and_nothing_acknowledged_is_lost(
    start_gunicorn, hooked, postgres_server: PostgresServer
) -> None:
    budget, hold = 1.0, 2.0
    server = start_gunicorn(
        DATABASE_REQUEST_BUDGET_MS=str(int(budget * 1000)),
        DATABASE_REQUEST_FAST_FAIL_MS=str(int(hold * 1000)),
        **SERVED,
    )
    _, key = source_key(hooked)
    body = recording("leads-status.form.txt").body
    answered: dict[str, int] = {}

    def send(name: str) -> tuple[str, int, float]:
        """One delivery (``hook-…``) or submission (``deal-…``): its answer and how long it took."""
        started = time.monotonic()
        try:
            if name.startswith("hook"):
                status = deliver(server, hooked, body, request_id=name, timeout=10).status_code
            else:
                status = submit(server, key, deal=name, timeout=10).status_code
        except requests.Timeout:
            status = 0  # what Kommo counts a late answer as
        answered[name] = status
        return name, status, time.monotonic() - started

    # Both workers warm, with persistent connections open on the server about to freeze.
    before = [send(f"hook-before-{n}")[1] for n in range(4)] + [send("deal-before")[1]]
    with postgres_server.frozen():
        # A burst, five requests for each of the two workers at once: the first of each worker finds its
        # open connection frozen and is cut at the budget; the others, queued behind it, are held off the
        # database and answered at once. Without the hold the last would wait for four budgets.
        burst = [f"hook-burst-{n}" for n in range(8)] + ["deal-burst-0", "deal-burst-1"]
        with ThreadPoolExecutor(len(burst)) as senders:
            frozen = list(senders.map(send, burst))
        # After the hold, one request per worker tries again (a new connection, to a server that accepts
        # and never answers), cut at the budget; the others wait behind it, then are held.
        time.sleep(hold)
        later = [f"hook-later-{n}" for n in range(6)] + ["deal-later-0", "deal-later-1"]
        with ThreadPoolExecutor(2) as senders:
            frozen += list(senders.map(send, later))
        # The health check keeps to the same deadline: a load balancer's probe does not hold a worker.
        started = time.monotonic()
        try:
            health = requests.get(f"{server.url}/healthz?frozen", timeout=10).status_code
        except requests.Timeout:
            health = 0
        health_took = time.monotonic() - started
    time.sleep(hold)  # the server runs again; the hold is over: the next request of each worker tries
    after = [send(f"hook-after-{n}") for n in range(4)] + [send("deal-after")]

    assert before == [200, 200, 200, 200, 202]
    assert [(name, status) for name, status, _ in frozen] == [(name, 503) for name in burst + later], frozen
    assert health == 503
    # What the deadline bounds: from the request reaching its worker to the answer written (gunicorn's
    # access log), the budget and a margin for writing the 503 on a loaded machine, short of the 2 s
    # connect timeout that would end a wait otherwise (DATABASE_CONNECT_TIMEOUT).
    # (Not gunicorn's start-up polling of /healthz: a worker's first request, loading what Django loads
    # lazily, can miss the deadline on a loaded machine, its answer written after the test went on.)
    unavailable = [took for status, took, path in served(server) if status == 503 and path != "/healthz"]
    assert len(unavailable) == len(frozen) + 1, (served(server), after)
    assert max(unavailable) <= budget + 0.7, unavailable
    # What the test's client measures holds the time a request waited in gunicorn's queue too, which no
    # deadline bounds (the last of a worker's five queued requests took 2.73 s at load 7): four budgets.
    # Without the hold the last of a worker's five (the burst) would wait five budgets, each cut at the end.
    assert max(took for _, _, took in [*frozen, ("health", health, health_took)]) <= 4 * budget, frozen
    # Once the server runs again, each worker serves at once: the connection the budget cut is not reused.
    assert [status for _, status, _ in after] == [200, 200, 200, 200, 202]
    assert max(took for _, _, took in after) < KOMMO_WAITS
    log = server.log()
    assert "WORKER TIMEOUT" not in log  # no worker was held until gunicorn killed it
    assert "not tried: the database missed a recent request's deadline" in log  # the hold answered some
    # Nothing acknowledged was lost. A delivery answered 503 may still be stored, when its INSERT had reached
    # the server before it froze (Kommo's retry is then a duplicate); a submission's transaction never
    # reached its commit, and is rolled back.
    acknowledged = {name for name, status in answered.items() if name.startswith("hook") and status == 200}
    stored = set(WebhookEvent.objects.values_list("request_id", flat=True))
    assert acknowledged <= stored
    assert stored <= set(answered)
    deals = {name for name, status in answered.items() if name.startswith("deal") and status == 202}
    assert {s.payload["deal"]["name"] for s in IntakeSubmission.objects.all()} == deals


def signed_in(user: User) -> dict[str, str]:
    """The headers of a request by ``user``: a session of theirs, as signing in makes (the production
    settings mark the cookie secure, which a client sends only over HTTPS: it is sent as a header)."""
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return {"Cookie": f"{settings.SESSION_COOKIE_NAME}={session.session_key}"}


def test_a_frozen_database_answers_a_page_503_by_the_page_deadline_and_the_next_page_is_served(
    start_gunicorn, hooked, postgres_server: PostgresServer
) -> None:
    """A manager's page and the admin, with their own deadline (DATABASE_PAGE_BUDGET_MS): before it, the
    worker waited until gunicorn's timeout killed it, and the person got no answer at all."""
    budget = 1.5
    server = start_gunicorn(
        GUNICORN_WORKERS="1",  # one process: the webhooks' hold below is the pages' process's
        DATABASE_PAGE_BUDGET_MS=str(int(budget * 1000)),
        DATABASE_CONNECT_TIMEOUT="10",  # so that only the deadline can end the wait for a new connection
        DATABASE_REQUEST_FAST_FAIL_MS="60000",
    )
    manager = User.objects.create_user("chris", password="not-used-here-1")
    manager.groups.add(Group.objects.get(name="Manager"))
    pages = {
        "/deals/": signed_in(manager),
        "/admin/": signed_in(User.objects.create_superuser("sam", password="not-used-here-1")),
    }
    body = recording("leads-status.form.txt").body

    def page(path: str) -> tuple[int, str, float]:
        """The page's status, its Retry-After and text, and how long it took."""
        started = time.monotonic()
        try:
            answer = requests.get(
                server.url + path, headers=pages[path], timeout=budget + 10, allow_redirects=False
            )
        except requests.RequestException as exc:  # before: the worker killed, no answer
            return 0, repr(exc), time.monotonic() - started
        return (
            answer.status_code,
            f"{answer.headers.get('Retry-After')} {answer.text}",
            time.monotonic() - started,
        )

    assert [page(path)[0] for path in pages] == [200, 200]  # the worker's connection open
    assert deliver(server, hooked, body).status_code == 200
    with postgres_server.frozen():
        # The worker's open connection: Django's health check of it cut at the deadline, the connection
        # closed. Then a new one, accepted by the kernel and never answered: cut at the deadline too.
        frozen = [page(path) for path in pages]
        # A webhook cut at its own deadline: the webhooks' hold begins (a minute here).
        webhook = deliver(server, hooked, body, timeout=10).status_code
    thawed = [page(path) for path in pages]
    held = deliver(server, hooked, body, timeout=10).status_code

    for status, text, took in frozen:
        assert status == 503, text
        assert text.startswith("30 ") and "The database does not answer." in text  # Retry-After, the page
        assert took <= budget + 1.0  # the deadline and a margin for writing the page on a loaded machine
    assert webhook == 503
    # The next page is served at once: not held by the webhooks' hold, which still answers them.
    assert [status for status, _, _ in thawed] == [200, 200]
    assert held == 503
    log = server.log()
    assert "WORKER TIMEOUT" not in log
    assert "the request's database budget (1500 ms, DATABASE_PAGE_BUDGET_MS) is spent" in log
