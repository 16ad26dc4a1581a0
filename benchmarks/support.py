"""What the benchmarks share: a portal served by gunicorn with the production configuration, and wrk.

Every benchmark starts its own throwaway PostgreSQL and Redis (``tests/support/services.py``) and measures
against a baseline taken in the same run; these helpers only start and drive the processes.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]

# Appended to every wrk script: prints one machine-readable line that ``wrk_run`` reads.
WRK_DONE = r"""
function done(summary, latency, requests)
  local format = 'RESULT {"requests": %d, "duration_us": %d, "non2xx": %d, "errors": %d, '
    .. '"p50_us": %d, "p99_us": %d}\n'
  io.write(string.format(format,
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_run(url: str, script: str, *, seconds: int, connections: int) -> dict[str, float]:
    """Runs wrk with ``script`` (its request part; the report part is added) against ``url``."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script + WRK_DONE)
    try:
        command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", file.name, url]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout  # noqa: S603
    finally:
        os.unlink(file.name)
    match = re.search(r"RESULT (\{.*\})", output)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    raw = json.loads(match.group(1))
    return {
        "requests": raw["requests"],
        "seconds": raw["duration_us"] / 1e6,
        "per_second": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "non_2xx": raw["non2xx"],
        "socket_errors": raw["errors"],
    }


def compare(
    baseline_url: str,
    measured_url: str,
    script: str,
    *,
    seconds: int,
    connections: int,
    after_warm_up: Callable[[], object] = lambda: None,
    rounds: int = 3,
) -> tuple[dict[str, float], dict[str, float]]:
    """Loads the baseline and the measured URL with ``script``, ``seconds`` each, taken in ``rounds``
    alternating runs after a 2-second warm-up of both, so that a slow spell of the machine weighs on both
    sides. Returns both totals: requests per second over all runs, the median p50 and the worst p99."""
    baseline, measured = compare_all(
        [baseline_url, measured_url],
        script,
        seconds=seconds,
        connections=connections,
        after_warm_up=after_warm_up,
        rounds=rounds,
    )
    return baseline, measured


def compare_all(
    urls: Sequence[str],
    script: str,
    *,
    seconds: int,
    connections: int,
    after_warm_up: Callable[[], object] = lambda: None,
    rounds: int = 3,
) -> list[dict[str, float]]:
    """:func:`compare` for any number of URLs, loaded in turn in each round; their totals in order."""
    for url in urls:
        wrk_run(url, script, seconds=2, connections=connections)
    after_warm_up()
    runs: dict[str, list[dict[str, float]]] = {url: [] for url in urls}
    for _ in range(rounds):
        for url, taken in runs.items():
            taken.append(
                wrk_run(url, script, seconds=max(1, round(seconds / rounds)), connections=connections)
            )
    return [_total(runs[url]) for url in urls]


def _total(runs: list[dict[str, float]]) -> dict[str, Any]:
    requests, duration = sum(run["requests"] for run in runs), sum(run["seconds"] for run in runs)
    return {
        "requests": requests,
        "seconds": round(duration, 2),
        "per_second": round(requests / duration, 1),
        "p50_ms": statistics.median(run["p50_ms"] for run in runs),
        "p99_ms": max(run["p99_ms"] for run in runs),
        "non_2xx": sum(run["non_2xx"] for run in runs),
        "socket_errors": sum(run["socket_errors"] for run in runs),
        "per_second_by_run": [run["per_second"] for run in runs],
    }


def django_start(settings_module: str, **environment: str) -> None:
    """Sets Django up in this process on ``settings_module``, with ``environment`` (the throwaway
    database's and broker's URLs) in the process's environment, and migrates the database."""
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    os.environ.update(environment)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def pin(pid: int, cpus: set[int]) -> None:
    """Restricts process ``pid``, its threads and every process descended from it to ``cpus`` (Linux)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    family, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        family.update(children)
        frontier.extend(children)
    for member in family:
        try:
            for thread in Path(f"/proc/{member}/task").iterdir():
                os.sched_setaffinity(int(thread.name), cpus)
        except (FileNotFoundError, ProcessLookupError):  # it ended meanwhile
            continue


class Portal:
    """gunicorn serving the portal with ``config/gunicorn.py`` on a free loopback port, one worker per core
    (the benchmarks share the cores with PostgreSQL, Redis and the load generator), no access log."""

    def __init__(
        self, *, settings_module: str, database_url: str, broker_url: str, start_timeout: float = 180
    ) -> None:
        from tests.support.services import free_port, wait_for

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": settings_module,
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": broker_url,
            "REDIS_URL": broker_url,
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "GUNICORN_ACCESS_LOG": "",
        }
        if not self.env.get("GUNICORN_WORKERS"):  # empty means the default, as in config/gunicorn.py
            self.env["GUNICORN_WORKERS"] = str(os.cpu_count() or 2)
        self.process = subprocess.Popen(  # noqa: S603  (the production configuration, on a loopback port)
            [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", str(ROOT / "config" / "gunicorn.py")],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(self._healthy, timeout=start_timeout, message="gunicorn")
        except BaseException:
            self.stop()  # a server that never became healthy is not left running
            raise

    def _healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def configuration(self) -> dict[str, object]:
        # config/gunicorn.py read in this process: its environment is the server's but for the variables
        # set above, so its worker class and threads are the server's (an empty variable meaning the default).
        from config import gunicorn

        return {
            "worker_class": gunicorn.worker_class,
            "workers": int(self.env["GUNICORN_WORKERS"]),
            "threads": gunicorn.threads,
        }

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)
