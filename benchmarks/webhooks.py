"""Webhook acknowledgement benchmark: ``python -m benchmarks.webhooks``.

gunicorn, with the production configuration (config/gunicorn.py), serves the portal on a throwaway
PostgreSQL, with tasks published to a throwaway Redis (no worker consumes them: this measures the
acknowledgement only). In the same run, wrk posts Kommo's recorded ``leads[status]`` delivery
(tests/fixtures/kommo/webhooks/leads-status.form.txt, with Kommo's headers) to the webhook URL, to the
floor of store-before-acknowledge — a plain Django view doing only the one committed INSERT of the same
row — and to a bare Django view that stores nothing (benchmarks/webhooks_urls.py). Each request to the
webhook URL stores one ``WebhookEvent``; tasks are published as in production (at most one per account per
``KOMMO_WEBHOOK_ENQUEUE_WINDOW_MS`` from a process).

Measured twice, each time with a new gunicorn:

- ``shared_cores``: everything on every core, PostgreSQL included;
- ``database_on_its_own_core`` (two cores or more): PostgreSQL pinned to the last core and gunicorn, Redis
  and wrk to the others, as when the database runs on its own host. The bare view never touches the
  database, so on shared cores the ratio also charges the database server's work to the web tier.

Reported for each: requests per second of each URL (runs alternating between them, see
``benchmarks.support.compare_all``), the ratio webhook / floor (target ≥ 0.9: the endpoint costs little
beyond the INSERT it cannot do without), p50 and p99 latency of the webhook (target p99 ≤ 50 ms), the
rows stored (must equal the webhook's 2xx answers, plus those in flight), and, for information only, the
ratios webhook / bare and floor / bare (the INSERT alone is about half a bare view's rate on two cores, so
the earlier target of 0.6 of a bare view was above the floor itself).

Options: ``--seconds`` of load on each URL (default 12), ``--connections`` (default 16).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from functools import partial
from typing import Any

from benchmarks.support import ROOT, Portal, compare_all, django_start, pin

BODY = ROOT / "tests" / "fixtures" / "kommo" / "webhooks" / "leads-status.form.txt"

TARGETS = {"ratio_to_floor_min": 0.9, "p99_ms_max": 50.0}
WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.body = [==[__BODY__]==]
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["User-Agent"] = "amoCRM-Webhooks/3.0"
wrk.headers["X-Amocrm-Requestid"] = "6f1c7a52-3e0b-4b8e-9a51-0d2f6c9b7e41"
wrk.headers["Accept-Encoding"] = "gzip"
"""


def acknowledgement(
    *, account: Any, database_url: str, broker_url: str, seconds: int, connections: int
) -> dict[str, Any]:
    from apps.kommo.models import WebhookEvent

    script = WRK_SCRIPT.replace("__BODY__", BODY.read_text(encoding="ascii").strip())
    portal = Portal(
        settings_module="benchmarks.webhooks_settings", database_url=database_url, broker_url=broker_url
    )
    bare_url, floor_url, webhook_url = (
        f"{portal.url}/bench/bare/",
        f"{portal.url}/bench/floor/{account.pk}/",
        f"{portal.url}/webhooks/kommo/{account.webhook_token}/",
    )
    try:
        bare, floor, webhook = compare_all(
            [bare_url, floor_url, webhook_url],
            script,
            seconds=seconds,
            connections=connections,
            after_warm_up=WebhookEvent.objects.all().delete,
        )
        rows = WebhookEvent.objects.count()  # both the floor's and the webhook's
    finally:
        portal.stop()
    ratio = webhook["per_second"] / floor["per_second"]
    return {
        "bare": bare,
        "floor": floor,
        "webhook": webhook,
        "rows_stored": rows,
        "rows_expected": webhook["requests"] - webhook["non_2xx"] + floor["requests"] - floor["non_2xx"],
        "ratio_to_floor": round(ratio, 3),
        "ratio_to_bare": round(webhook["per_second"] / bare["per_second"], 3),
        "floor_to_bare": round(floor["per_second"] / bare["per_second"], 3),
        "meets_targets": ratio >= TARGETS["ratio_to_floor_min"]
        and webhook["p99_ms"] <= TARGETS["p99_ms_max"],
        "gunicorn": portal.configuration(),
    }


def split_cores() -> tuple[set[int], set[int]] | None:
    """The cores for gunicorn, Redis and wrk, and the one left to PostgreSQL; None with fewer than two."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None
    return set(available[:-1]), {available[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=12)
    parser.add_argument("--connections", type=int, default=16)
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    from tests.support.services import PostgresServer, RedisServer

    postgres, redis_server = PostgresServer().start(), RedisServer().start()
    results: dict[str, Any] = {
        "targets": TARGETS,
        "connections": options.connections,
        "seconds": options.seconds,
        "body_bytes": len(BODY.read_bytes().strip()),
    }
    try:
        django_start(
            "benchmarks.webhooks_settings", DATABASE_URL=postgres.url, CELERY_BROKER_URL=redis_server.url
        )
        from django.db import connection

        from apps.kommo.models import KommoAccount

        account = KommoAccount.objects.create(
            name="Bench", subdomain="irestoremoldova", kommo_id=16503244, base_url="https://bench.kommo.com"
        )
        measure = partial(
            acknowledgement,
            account=account,
            database_url=postgres.url,
            broker_url=redis_server.url,
            seconds=options.seconds,
            connections=options.connections,
        )
        results["shared_cores"] = measure()
        cores = split_cores()
        if cores is not None:
            web, database = cores
            connection.close()
            pin(postgres.postmaster_pid(), database)  # and the backends it has forked
            assert redis_server.process is not None
            pin(redis_server.process.pid, web)
            os.sched_setaffinity(0, web)  # wrk and gunicorn, started from here, inherit it
            results["database_on_its_own_core"] = {
                **measure(),
                "cores": {"web": sorted(web), "database": sorted(database)},
            }
    finally:
        redis_server.stop()
        postgres.stop()
    print(json.dumps({"webhook_acknowledgement": results}, indent=2))


if __name__ == "__main__":
    main()
