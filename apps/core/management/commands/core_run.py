"""Runs the portal's processes together in the foreground, for ``make run``.

Each process gets its own session so that Ctrl-C (or SIGTERM) stops every one of them and their children:
first politely, then with SIGKILL after a grace period. If one process dies, the others are stopped too, so
nothing is left half-running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.management.base import BaseCommand

GRACE_SECONDS = 10


@dataclass
class Proc:
    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes] | None = None


def portal_processes(*, host: str, port: int) -> list[Proc]:
    python = sys.executable
    manage = str(settings.BASE_DIR / "manage.py")
    celery = [python, "-m", "celery", "-A", "config"]
    return [
        Proc("web", [python, manage, "runserver", f"{host}:{port}", "--noreload"]),
        Proc("worker", [*celery, "worker", "-Q", "default,webhooks,kommo", "-l", "INFO", "-c", "2"]),
        Proc("beat", [*celery, "beat", "-l", "INFO", "-s", settings.CELERY_BEAT_SCHEDULE_FILENAME]),
    ]


class Command(BaseCommand):
    help = "Runs web, worker and beat together in the foreground; Ctrl-C stops them all."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    def handle(self, *args: object, host: str, port: int, **options: object) -> None:
        procs = portal_processes(host=host, port=port)
        stopping = threading.Event()

        def request_stop(signum: int, frame: object) -> None:
            stopping.set()

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

        for proc in procs:
            proc.popen = subprocess.Popen(  # noqa: S603  (our own interpreter and arguments)
                proc.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
            )
            threading.Thread(target=self._relay, args=(proc,), daemon=True).start()
        self.stdout.write(
            self.style.SUCCESS(f"Portal on http://{host}:{port}/admin/  (Ctrl-C stops everything)")
        )

        exit_code = 0
        while not stopping.is_set():
            for proc in procs:
                assert proc.popen is not None
                if proc.popen.poll() is not None:
                    self.stderr.write(f"{proc.name} exited with {proc.popen.returncode}; stopping the rest")
                    exit_code = 1
                    stopping.set()
            stopping.wait(0.5)
        self._stop_all(procs)
        if exit_code:
            raise SystemExit(exit_code)

    def _relay(self, proc: Proc) -> None:
        assert proc.popen is not None and proc.popen.stdout is not None
        for raw in proc.popen.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self.stdout.write(f"{proc.name:>7} | {line}")

    def _stop_all(self, procs: list[Proc]) -> None:
        self.stdout.write("Stopping…")
        alive = [p for p in procs if p.popen is not None and p.popen.poll() is None]
        for proc in alive:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for proc in alive:
            assert proc.popen is not None
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{proc.name} did not stop in {GRACE_SECONDS}s; killing it")
        for proc in procs:
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
