"""Runs the portal's processes together in the foreground, for ``make run``.

With the demo sandbox (the default), it first starts the Kommo sandbox with demo data and prepares the
portal against it — connect, bootstrap the fields and the webhook subscription, sync, install the default
gate rules — so that deals, stakeholders and gates are there to try. Then web, worker and beat.

Each process gets its own session so that Ctrl-C (or SIGTERM) stops every one of them and their children:
first politely, then with SIGKILL after a grace period. If one process dies, the others are stopped too, so
nothing is left half-running. The steps are management commands run by name and the sandbox is run as
``python -m kommo_sandbox``: this module imports no app.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

GRACE_SECONDS = 10
SANDBOX_START_SECONDS = 30


@dataclass
class Proc:
    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes] | None = None


def manage(*args: str) -> list[str]:
    return [sys.executable, str(settings.BASE_DIR / "manage.py"), *args]


def public_url_for(*, host: str, port: int, environ: dict[str, str] | None = None) -> str:
    """The address Kommo (here: the sandbox) posts webhooks to: ``KOMMO_PUBLIC_URL`` when the environment or
    ``.env`` sets it, else this run's own address, so that ``PORT=8420 make run`` subscribes, prints and
    redirects to port 8420 rather than the settings' default."""
    explicit = (os.environ if environ is None else environ).get("KOMMO_PUBLIC_URL", "").strip()
    return explicit.rstrip("/") if explicit else f"http://{host}:{port}"


def sandbox_process(*, host: str, port: int, public_url: str, run_dir: Path) -> Proc:
    """The demo sandbox (``python -m kommo_sandbox``: a program of its own, not a portal app), its OAuth
    integration redirecting to this portal's callback."""
    return Proc(
        "sandbox",
        [
            sys.executable,
            "-m",
            "kommo_sandbox",
            "--host",
            host,
            "--port",
            str(port),
            "--seed",
            "demo",
            "--credentials-file",
            str(run_dir / "sandbox-credentials.json"),
            "--state-file",
            str(run_dir / "sandbox-state.json"),
            "--redirect-uri",
            public_url + reverse("kommo:oauth-callback"),
        ],
    )


def portal_processes(*, host: str, port: int) -> list[Proc]:
    celery = [sys.executable, "-m", "celery", "-A", "config"]
    return [
        Proc("web", manage("runserver", f"{host}:{port}", "--noreload")),
        Proc("worker", [*celery, "worker", "-Q", "default,webhooks,kommo", "-l", "INFO", "-c", "2"]),
        Proc("beat", [*celery, "beat", "-l", "INFO", "-s", settings.CELERY_BEAT_SCHEDULE_FILENAME]),
    ]


class Command(BaseCommand):
    help = "Runs the demo sandbox, then web, worker and beat together in the foreground; Ctrl-C stops all."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--sandbox-port", type=int, default=int(os.environ.get("SANDBOX_PORT", "8001")))
        parser.add_argument(
            "--no-sandbox", action="store_true", help="do not start the Kommo sandbox nor connect to it"
        )

    def handle(self, *args: object, host: str, port: int, sandbox_port: int, no_sandbox: bool, **_: object):  # type: ignore[no-untyped-def]
        self.procs: list[Proc] = []
        self.stopping = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        # Every process started below (setup steps, web, worker, beat) reads the same public URL.
        public_url = public_url_for(host=host, port=port)
        os.environ["KOMMO_PUBLIC_URL"] = public_url
        try:
            if not no_sandbox:
                board = self._start_demo_sandbox(host=host, port=sandbox_port, public_url=public_url)
            for proc in portal_processes(host=host, port=port):
                self._start(proc)
            self.stdout.write(
                self.style.SUCCESS(f"Portal:  http://{host}:{port}/admin/  (Ctrl-C stops everything)")
            )
            if not no_sandbox:
                self.stdout.write(self.style.SUCCESS(f"Sandbox: {board}  (move a deal and watch the gates)"))
            exit_code = self._watch()
        finally:
            self._stop_all()
        if exit_code:
            raise SystemExit(exit_code)

    # --- the demo sandbox --------------------------------------------------------------------------------

    def _start_demo_sandbox(self, *, host: str, port: int, public_url: str) -> str:
        run_dir = Path(settings.BASE_DIR) / ".run"
        credentials_file = run_dir / "sandbox-credentials.json"
        credentials_file.unlink(missing_ok=True)  # rewritten with the live base URL once the server listens
        self._start(sandbox_process(host=host, port=port, public_url=public_url, run_dir=run_dir))
        credentials = self._wait_for_sandbox(credentials_file)
        base_url = credentials["base_url"]
        connected = self._step(
            "kommo_connect",
            "--base-url",
            base_url,
            "--token",
            credentials["long_lived_token"],
            "--subdomain",
            credentials["subdomain"],
            "--name",
            "Kommo sandbox (demo)",
        )
        match = re.search(r"\bpk (\d+)\b", connected)
        if not match:
            raise CommandError(f"kommo_connect did not report the account: {connected!r}")
        account = match.group(1)
        self._step("kommo_bootstrap", "--account", account, "--public-url", public_url)
        self._step("kommo_sync", "--account", account)
        self._step("gates_install_defaults", "--account", account)
        # The decision-maker coverage trend of the weeks the history covers, and this week's.
        self._step("reports_coverage_backfill", "--account", account, "--this-week")
        # The forecast's snapshots of the past weeks (its accuracy from the first day), and this week's.
        self._step("reports_forecast_backtest", "--account", account, "--this-week")
        return f"{base_url}/board"

    def _wait_for_sandbox(self, credentials_file: Path) -> dict[str, str]:
        deadline = time.monotonic() + SANDBOX_START_SECONDS
        while time.monotonic() < deadline and not self.stopping.is_set():
            if credentials_file.exists():
                try:
                    credentials: dict[str, str] = json.loads(credentials_file.read_text())
                    answer = requests.get(
                        credentials["base_url"] + "/api/v4/account",
                        headers={"Authorization": f"Bearer {credentials['long_lived_token']}"},
                        timeout=2,
                    )
                    if answer.status_code == 200:
                        return credentials
                except (requests.RequestException, ValueError, KeyError):
                    pass
            if any(p.popen is not None and p.popen.poll() is not None for p in self.procs):
                raise CommandError("The Kommo sandbox exited at start (see its lines above)")
            time.sleep(0.2)
        raise CommandError(f"The Kommo sandbox did not answer within {SANDBOX_START_SECONDS}s")

    def _step(self, *args: str) -> str:
        """Runs one management command to completion, relaying its output; fails the start if it fails."""
        self.stdout.write(f"  setup | manage.py {args[0]}")
        # One stream, unbuffered, so its lines come in the order written; its own results, not the INFO
        # log lines of the services it calls (LOG_LEVEL, when set, still wins).
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.setdefault("LOG_LEVEL", "WARNING")
        result = subprocess.run(  # noqa: S603
            manage(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        for line in result.stdout.splitlines():
            self.stdout.write(f"  setup | {line}")
        if result.returncode != 0:
            raise CommandError(f"manage.py {args[0]} failed with exit code {result.returncode}")
        return result.stdout

    # --- processes -----------------------------------------------------------------------------------------

    def _start(self, proc: Proc) -> None:
        proc.popen = subprocess.Popen(  # noqa: S603  (our own interpreter and arguments)
            proc.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=settings.BASE_DIR,  # `-m kommo_sandbox` and `-A config` are found from the project's root
        )
        self.procs.append(proc)
        threading.Thread(target=self._relay, args=(proc,), daemon=True).start()

    def _watch(self) -> int:
        while not self.stopping.is_set():
            for proc in self.procs:
                assert proc.popen is not None
                if proc.popen.poll() is not None:
                    self.stderr.write(f"{proc.name} exited with {proc.popen.returncode}; stopping the rest")
                    return 1
            self.stopping.wait(0.5)
        return 0

    def _relay(self, proc: Proc) -> None:
        assert proc.popen is not None and proc.popen.stdout is not None
        for raw in proc.popen.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self.stdout.write(f"{proc.name:>7} | {line}")

    def _stop_all(self) -> None:
        if not self.procs:
            return
        self.stdout.write("Stopping…")
        alive = [p for p in self.procs if p.popen is not None and p.popen.poll() is None]
        for proc in alive:  # the leader first, so that a worker can stop its own pool in order
            assert proc.popen is not None
            proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for proc in alive:
            assert proc.popen is not None
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{proc.name} did not stop in {GRACE_SECONDS}s; killing it")
        for proc in self.procs:
            # Whatever is left in a process's session (pool children included) goes now.
            _signal_group(proc, signal.SIGKILL)
            if proc.popen is not None:
                proc.popen.wait()
        self.stdout.write("Stopped.")


def _signal_group(proc: Proc, sig: signal.Signals) -> None:
    if proc.popen is None:
        return
    try:
        os.killpg(proc.popen.pid, sig)
    except ProcessLookupError:
        pass
