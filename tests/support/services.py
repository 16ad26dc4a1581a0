"""Throwaway PostgreSQL and Redis servers and real Celery worker processes for the tests.

Each starts on a free loopback port in a temporary folder and is removed afterwards. When a program is
not installed the test is skipped with the reason, except under ``CI=true``, where it fails instead: CI
must never turn green by skipping what it was meant to check.
"""

from __future__ import annotations

import glob
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Skip the test, or fail it under CI=true."""
    if in_ci():
        pytest.fail(f"{reason} — CI=true requires it (.ci/run installs it)", pytrace=False)
    pytest.skip(reason)


def python_run(
    code: str, *, env: Mapping[str, str | None] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child Python of the suite's interpreter, in the repository's root, with this
    process's environment changed by ``env`` (a value of None removes the variable); its output is kept."""
    changed = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={key: value for key, value in changed.items() if value is not None},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# Under pytest-xdist each worker starts its own PostgreSQL, Redis and gunicorn: each worker takes their ports
# from a range of its own, below Linux's ephemeral range (32768-60999) where the kernel puts every port-0
# server (sandboxes, live servers) and client socket, so that two workers never pick the same port between
# one's check and its server's bind. One process alone takes any free port.
WORKER_PORTS_START = 20000
WORKER_PORTS_EACH = 500
_handed_out: set[int] = set()


def xdist_worker_number() -> int | None:
    """0 for xdist's worker ``gw0``, 1 for ``gw1``…; None outside xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else None


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    worker = xdist_worker_number()
    if worker is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    first = WORKER_PORTS_START + (worker % 24) * WORKER_PORTS_EACH
    candidates = [port for port in range(first, first + WORKER_PORTS_EACH) if port not in _handed_out]
    random.shuffle(candidates)  # a port a stopped server left in TIME_WAIT is not the next one tried
    for port in candidates:
        if _bindable(port):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port in {first}-{first + WORKER_PORTS_EACH - 1} for xdist worker {worker}")


def wait_for(predicate, *, timeout: float, interval: float = 0.05, message: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {message}")


# -- stopped on SIGTERM and SIGINT too -------------------------------------------------------------------
#
# A fixture's teardown stops what it started, but a run killed by SIGTERM (``timeout``, CI cancelling a job)
# runs no teardown, and PostgreSQL (pg_ctl puts it in a session of its own) and the Celery workers (started
# in sessions of their own, so that a test can kill one whole) outlived it. Every server below registers its
# stop here while it runs; the first SIGTERM or SIGINT stops them all, then the signal does what it would
# have done (SIGTERM ends the process as before, SIGINT raises KeyboardInterrupt for pytest to report).

_running: dict[int, tuple[int, Callable[[], None]]] = {}  # id(server) -> (order, its stop)
_handled_in: int | None = None  # the process whose handlers are installed (a forked child is not it)
_previous: dict[int, Any] = {}


def _running_add(server: object, stop: Callable[[], None], *, order: int) -> None:
    """``stop`` runs on SIGTERM or SIGINT while ``server`` runs (lower ``order`` first: workers before the
    broker and database they use)."""
    _signals_handle()
    _running[id(server)] = (order, stop)


def _running_remove(server: object) -> None:
    _running.pop(id(server), None)


def running_stop_all() -> None:
    """Stops every server still registered, each once, whatever the others do."""
    for key, (_, stop) in sorted(_running.items(), key=lambda item: item[1][0]):
        _running.pop(key, None)
        try:
            stop()
        except Exception as error:  # the others must still be stopped
            print(f"stopping a test server on a signal failed: {error!r}", file=sys.stderr)


def _on_signal(number: int, frame: Any) -> None:
    if os.getpid() == _handled_in:  # not in a process forked from this one: the servers are not its own
        running_stop_all()
    previous = _previous.get(number, signal.SIG_DFL)
    if callable(previous):
        previous(number, frame)  # SIGINT: KeyboardInterrupt
        return
    signal.signal(number, signal.SIG_DFL)
    os.kill(os.getpid(), number)  # SIGTERM: the process ends as it would have, with the same status


def _signals_handle() -> None:
    global _handled_in
    if _handled_in == os.getpid() or threading.current_thread() is not threading.main_thread():
        return
    for number in (signal.SIGTERM, signal.SIGINT):
        current = signal.getsignal(number)
        if current is not _on_signal:
            _previous[number] = current
            signal.signal(number, _on_signal)
    _handled_in = os.getpid()


def postgres_program(name: str) -> str | None:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else shutil.which(name)


@dataclass
class PostgresServer:
    port: int = field(default_factory=free_port)
    user: str = "portal"
    folder: Path | None = None

    @property
    def url(self) -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/postgres"

    def start(self) -> PostgresServer:
        initdb, pg_ctl = postgres_program("initdb"), postgres_program("pg_ctl")
        if not initdb or not pg_ctl:
            unavailable("PostgreSQL is not installed (initdb/pg_ctl not found)")
        assert initdb and pg_ctl
        self.folder = Path(tempfile.mkdtemp(prefix="portal-pg-"))
        run_as: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root: use the postgres account.
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                unavailable("running as root and there is no 'postgres' user to run PostgreSQL as")
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            run_as = ["runuser", "-u", "postgres", "--"]
        data = self.folder / "data"
        subprocess.run(
            [*run_as, initdb, "-D", str(data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
        )
        # autovacuum off: a test's rows are never committed (its transaction is rolled back), so an
        # autovacuum ANALYZE between tests records the tables as empty (reltuples 0 over many pages), and the
        # planner then believes a table of thousands of rows holds one and nests loops over full index scans:
        # the demo forecast test, 47 s alone, ran for over 20 minutes in the suite. Never analyzed, a table's
        # size is estimated from its pages, which is close enough.
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c autovacuum=off"
        )
        self._run_as = run_as
        self._pg_ctl = pg_ctl
        self._options = options
        _running_add(self, self.stop, order=2)
        self.start_again()
        return self

    def start_again(self) -> None:
        """Starts the server on its port and data (after :meth:`stop_now`: with crash recovery)."""
        assert self.folder is not None, "not started"
        subprocess.run(
            [
                *self._run_as,
                *(self._pg_ctl, "-D", str(self.folder / "data"), "-o", self._options),
                *("-l", str(self.folder / "log"), "-w", "start"),
            ],
            check=True,
            capture_output=True,
        )

    def stop_now(self) -> None:
        """Stops the server as a crash would (``-m immediate``): every session ends at once, transactions
        not committed are lost; :meth:`start_again` recovers it with its data."""
        assert self.folder is not None, "not started"
        subprocess.run(
            [*self._run_as, self._pg_ctl, "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop"],
            check=True,
            capture_output=True,
        )

    def postmaster_pid(self) -> int:
        """The server's main process, parent of every backend."""
        assert self.folder is not None, "not started"
        return int((self.folder / "data" / "postmaster.pid").read_text().split()[0])

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """The whole server stopped with SIGSTOP for the block, as a host that hangs: open connections stay
        open and are never answered, new ones are accepted by the kernel and never answered. SIGCONT
        afterwards, whatever happened in the block."""
        stopped: list[int] = []
        try:
            postmaster = self.postmaster_pid()
            os.kill(postmaster, signal.SIGSTOP)  # first: a stopped postmaster forks no new backend
            stopped.append(postmaster)
            children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True)
            for pid in map(int, children.stdout.split()):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
            yield
        finally:
            for pid in reversed(stopped):
                os.kill(pid, signal.SIGCONT)

    def restart(self) -> None:
        """Stops the server (every session ends) and starts it again on the same port and data."""
        assert self.folder is not None, "not started"
        subprocess.run(
            [
                *self._run_as,
                *(self._pg_ctl, "-D", str(self.folder / "data"), "-l", str(self.folder / "log")),
                *("-m", "fast", "-w", "restart"),
            ],
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        _running_remove(self)
        if self.folder is None:
            return
        subprocess.run(
            [*self._run_as, self._pg_ctl, "-D", str(self.folder / "data"), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None


@dataclass
class RedisServer:
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        program = shutil.which("redis-server")
        if not program:
            unavailable("Redis is not installed (redis-server not found)")
        assert program
        self.process = subprocess.Popen(
            [program, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _running_add(self, self.stop, order=1)
        import redis

        client = redis.Redis.from_url(self.url)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_for(answers, timeout=10, message="redis-server to answer")
        return self

    def stop(self) -> None:
        _running_remove(self)
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@dataclass
class CeleryWorker:
    """A real ``celery worker`` process, in its own session so that a test can SIGKILL all of it."""

    broker_url: str
    database_url: str
    include: list[str] = field(default_factory=list)
    queues: str = "default,webhooks,kommo"
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def start(self, *, timeout: float = 90) -> CeleryWorker:
        fd, log_name = tempfile.mkstemp(prefix="portal-worker-", suffix=".log")
        self.log_path = Path(log_name)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": self.broker_url,
            "REDIS_URL": self.broker_url,
            **self.extra_env,
        }
        argv = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", self.queues, "-c", "2"]
        argv += ["-l", "INFO", "-n", f"test-{os.getpid()}-{time.monotonic_ns()}@%h"]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        for module in self.include:
            argv += ["-I", module]
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=fd, stderr=subprocess.STDOUT, start_new_session=True
        )
        _running_add(self, self.kill_all, order=0)
        os.close(fd)
        wait_for(
            lambda: "ready." in self.log() or self.process.poll() is not None,
            timeout=timeout,
            message="worker",
        )  # type: ignore[union-attr]
        if self.process.poll() is not None:
            raise RuntimeError(f"celery worker exited at start:\n{self.log()}")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once: nothing gets to acknowledge or clean up."""
        self._signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(timeout=10)

    def kill_all(self) -> None:
        """SIGKILL the worker's whole session, without waiting for it to finish its tasks (on a signal)."""
        _running_remove(self)
        self._signal(signal.SIGKILL)
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def stop(self) -> None:
        _running_remove(self)
        if self.process is not None and self.process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        self._signal(signal.SIGKILL)
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass


@dataclass
class CeleryBeat:
    """A real ``celery beat`` process with the project's schedule, its state file in a temporary folder."""

    broker_url: str
    database_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    folder: Path | None = None

    def start(self, *, timeout: float = 90) -> CeleryBeat:
        self.folder = Path(tempfile.mkdtemp(prefix="portal-beat-"))
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": self.broker_url,
            "REDIS_URL": self.broker_url,
            **self.extra_env,
        }
        argv = [sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "INFO"]
        argv += ["-s", str(self.folder / "schedule"), "--pidfile", str(self.folder / "beat.pid")]
        log = open(self.folder / "log", "wb")
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        _running_add(self, self.stop, order=0)
        log.close()
        wait_for(
            lambda: "beat: Starting" in self.log() or self.process.poll() is not None,  # type: ignore[union-attr]
            timeout=timeout,
            message="beat",
        )
        if self.process.poll() is not None:
            raise RuntimeError(f"celery beat exited at start:\n{self.log()}")
        return self

    def log(self) -> str:
        path = self.folder / "log" if self.folder else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def stop(self) -> None:
        _running_remove(self)
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=10)
            self.process = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
