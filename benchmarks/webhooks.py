"""Webhook acknowledgement benchmark: ``python -m benchmarks.webhooks``.

gunicorn, with the production configuration (config/gunicorn.py), serves the portal on a throwaway
PostgreSQL, with tasks published to a throwaway Redis (no worker consumes them: this measures the
acknowledgement only). In the same run, wrk posts Kommo's recorded ``leads[status]`` delivery
(tests/fixtures/kommo/webhooks/leads-status.form.txt, with Kommo's headers) to the webhook URL and to a bare
Django view (benchmarks/webhooks_urls.py). Each request to the webhook URL stores one ``WebhookEvent``;
tasks are published as in production (at most one per account per ``KOMMO_WEBHOOK_ENQUEUE_WINDOW_MS`` from a
process).

Reported: requests per second of each, the ratio webhook / bare (target ≥ 0.6), p50 and p99 latency of
the webhook (target p99 ≤ 50 ms), and the rows stored (must equal the 2xx answers).

Options: ``--seconds`` per load run (default 10), ``--connections`` (default 16).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BODY = ROOT / "tests" / "fixtures" / "kommo" / "webhooks" / "leads-status.form.txt"

WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.body = [==[__BODY__]==]
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["User-Agent"] = "amoCRM-Webhooks/3.0"
wrk.headers["X-Amocrm-Requestid"] = "6f1c7a52-3e0b-4b8e-9a51-0d2f6c9b7e41"
wrk.headers["Accept-Encoding"] = "gzip"

function done(summary, latency, requests)
  local format = 'RESULT {"requests": %d, "duration_us": %d, "non2xx": %d, "errors": %d, '
    .. '"p50_us": %d, "p99_us": %d}\n'
  io.write(string.format(format,
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def _wrk(url: str, *, seconds: int, connections: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT.replace("__BODY__", BODY.read_text(encoding="ascii").strip()))
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", script.name, url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout  # noqa: S603
    os.unlink(script.name)
    match = re.search(r"RESULT (\{.*\})", output)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    raw = json.loads(match.group(1))
    return {
        "requests": raw["requests"],
        "per_second": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "non_2xx": raw["non2xx"],
        "socket_errors": raw["errors"],
    }


def acknowledgement(*, database_url: str, broker_url: str, seconds: int, connections: int) -> dict[str, Any]:
    import requests

    from apps.kommo.models import KommoAccount, WebhookEvent
    from config import gunicorn as gunicorn_conf
    from tests.support.services import free_port, wait_for

    account = KommoAccount.objects.create(
        name="Bench", subdomain="irestoremoldova", kommo_id=16503244, base_url="https://bench.kommo.com"
    )
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "benchmarks.webhooks_settings",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
    }
    env["GUNICORN_BIND"] = f"127.0.0.1:{port}"
    # One worker per core: here gunicorn shares the cores with PostgreSQL, Redis and wrk.
    env.setdefault("GUNICORN_WORKERS", str(os.cpu_count() or 2))
    env["GUNICORN_ACCESS_LOG"] = ""  # no access log: it would be measured too
    server = subprocess.Popen(  # noqa: S603  (the production configuration, on a loopback port)
        [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", str(ROOT / "config" / "gunicorn.py")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    webhook_url = f"{base}/webhooks/kommo/{account.webhook_token}/"
    try:

        def answers() -> bool:
            try:
                return requests.get(f"{base}/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_for(answers, timeout=30, message="gunicorn")
        _wrk(f"{base}/bench/bare/", seconds=2, connections=connections)  # warm-up of both paths
        _wrk(webhook_url, seconds=2, connections=connections)
        WebhookEvent.objects.all().delete()
        bare = _wrk(f"{base}/bench/bare/", seconds=seconds, connections=connections)
        webhook = _wrk(webhook_url, seconds=seconds, connections=connections)
        stored = WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED).count()
    finally:
        server.terminate()
        server.wait(timeout=15)
    ratio = webhook["per_second"] / bare["per_second"]
    return {
        "bare": bare,
        "webhook": webhook,
        "stored_events": stored,
        "throughput_ratio": round(ratio, 3),
        "targets": {"throughput_ratio_min": 0.6, "p99_ms_max": 50.0},
        "meets_targets": ratio >= 0.6 and webhook["p99_ms"] <= 50.0,
        "gunicorn": {
            "worker_class": env.get("GUNICORN_WORKER_CLASS", gunicorn_conf.worker_class),
            "workers": int(env["GUNICORN_WORKERS"]),
            "threads": int(env.get("GUNICORN_THREADS", gunicorn_conf.threads)),
        },
        "connections": connections,
        "seconds": seconds,
        "body_bytes": len(BODY.read_bytes().strip()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    from tests.support.services import PostgresServer, RedisServer

    postgres, redis_server = PostgresServer().start(), RedisServer().start()
    try:
        os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.webhooks_settings"
        os.environ["DATABASE_URL"] = postgres.url
        os.environ["CELERY_BROKER_URL"] = redis_server.url
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        results = acknowledgement(
            database_url=postgres.url,
            broker_url=redis_server.url,
            seconds=options.seconds,
            connections=options.connections,
        )
    finally:
        redis_server.stop()
        postgres.stop()
    print(json.dumps({"webhook_acknowledgement": results}, indent=2))


if __name__ == "__main__":
    main()
