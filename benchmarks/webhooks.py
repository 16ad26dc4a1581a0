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
import shutil
from typing import Any

from benchmarks.support import ROOT, Portal, wrk_run

BODY = ROOT / "tests" / "fixtures" / "kommo" / "webhooks" / "leads-status.form.txt"

WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.body = [==[__BODY__]==]
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["User-Agent"] = "amoCRM-Webhooks/3.0"
wrk.headers["X-Amocrm-Requestid"] = "6f1c7a52-3e0b-4b8e-9a51-0d2f6c9b7e41"
wrk.headers["Accept-Encoding"] = "gzip"
"""


def acknowledgement(*, database_url: str, broker_url: str, seconds: int, connections: int) -> dict[str, Any]:
    from apps.kommo.models import KommoAccount, WebhookEvent

    account = KommoAccount.objects.create(
        name="Bench", subdomain="irestoremoldova", kommo_id=16503244, base_url="https://bench.kommo.com"
    )
    script = WRK_SCRIPT.replace("__BODY__", BODY.read_text(encoding="ascii").strip())
    portal = Portal(
        settings_module="benchmarks.webhooks_settings", database_url=database_url, broker_url=broker_url
    )
    bare_url, webhook_url = (
        f"{portal.url}/bench/bare/",
        f"{portal.url}/webhooks/kommo/{account.webhook_token}/",
    )
    try:
        wrk_run(bare_url, script, seconds=2, connections=connections)  # warm-up of both paths
        wrk_run(webhook_url, script, seconds=2, connections=connections)
        WebhookEvent.objects.all().delete()
        bare = wrk_run(bare_url, script, seconds=seconds, connections=connections)
        webhook = wrk_run(webhook_url, script, seconds=seconds, connections=connections)
        stored = WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED).count()
    finally:
        portal.stop()
    ratio = webhook["per_second"] / bare["per_second"]
    return {
        "bare": bare,
        "webhook": webhook,
        "stored_events": stored,
        "throughput_ratio": round(ratio, 3),
        "targets": {"throughput_ratio_min": 0.6, "p99_ms_max": 50.0},
        "meets_targets": ratio >= 0.6 and webhook["p99_ms"] <= 50.0,
        "gunicorn": portal.configuration(),
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
