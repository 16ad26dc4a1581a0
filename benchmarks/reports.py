"""Report pages benchmark: ``python -m benchmarks.reports [--small 10000 --large 100000 --runs 15]``.

One throwaway PostgreSQL server, two databases on it: one seeded with a synthetic account of ``--small``
deals, one with ``--large`` deals (``reports_seed_synthetic``: 10 stage changes and 4 stakeholders per
deal, so 100,000 deals come with 1,000,000 stage changes and 400,000 stakeholders). Each database is
measured by a process of its own (``--measure``), so that neither size warms the other's caches.

Every report page is found in the reports app's URL conf (``apps.reports.urls``: a page added later is
measured without changing this file) and fetched through Django's test client as a signed-in head of sales
with the page's default filters: after two warm-up requests, ``--runs`` timed ones, each the server's whole
handling of the request (middleware, view, queries, template). Printed per page: p50, p95 and the spread
(min-max) at each size, the ratio of the p50s large ÷ small (target ≤ 2: the cost must not grow with the
size of the history) and whether p95 at the large size is within 300 ms. Timings on a shared machine are
noisy: the spread says how much. The large account has ten times the deals of the small one over the same
two years, so ten times the deals per quarter; ``--long-history`` adds a third database with the large
account's deals created over a history as many times longer (the small one's deals per year), measured
against the small one: what grows there is the history, not the period's volume. The BI export has a
benchmark of its own (:mod:`benchmarks.export`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RATIO_TARGET = 2.0
P95_TARGET_MS = 300.0


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def report_pages() -> list[tuple[str, str]]:
    """(name, path) of every page in the reports app's URL conf, in its order: a pattern without arguments
    once, a pattern taking a ``slug`` once per registered report (``reports_listed``)."""
    from django.urls import URLPattern, URLResolver, reverse

    try:
        from apps.reports import urls
        from apps.reports.framework import reports_listed
    except ImportError:
        return []
    slugs = [report.slug for report in reports_listed()]
    namespace = getattr(urls, "app_name", "")
    pages: list[tuple[str, str]] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = f"{prefix}{pattern.namespace}:" if pattern.namespace else prefix
                walk(pattern.url_patterns, inner)
            elif isinstance(pattern, URLPattern) and pattern.name:
                name = f"{prefix}{pattern.name}"
                converters = set(pattern.pattern.converters)
                if not converters:
                    pages.append((name, reverse(name)))
                elif converters == {"slug"}:
                    pages.extend((slug, reverse(name, kwargs={"slug": slug})) for slug in slugs)

    walk(list(urls.urlpatterns), f"{namespace}:" if namespace else "")
    return pages


def measure(database_url: str, deals: int, runs: int, years: float = 2.0) -> dict[str, Any]:
    """In this process: seed ``deals`` created over ``years`` into the database, then time every report
    page."""
    from benchmarks.support import django_start

    django_start("benchmarks.settings", DATABASE_URL=database_url)
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from apps.users.models import User

    started = time.monotonic()
    call_command("reports_seed_synthetic", deals=deals, years=years, stdout=sys.stderr)
    seeded = time.monotonic() - started
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    # What beat does every REPORTS_EXPORT_STUCK_MINUTES: the stuck page reads these states, never computes
    # them.
    from apps.kommo.models import KommoAccount
    from apps.reports.export.stuck import stuck_states_refresh

    started = time.monotonic()
    for account in KommoAccount.objects.all():
        stuck_states_refresh(account=account)
    stuck_refresh = time.monotonic() - started
    with connection.cursor() as cursor:
        # What the open-deal pages read: the deals open now, and the oldest of them.
        cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE created_at < now() - interval '1 year')"
            " FROM kommo_lead WHERE NOT is_deleted AND status_kommo_id NOT IN (142, 143)"
        )
        open_deals, open_year_old = cursor.fetchone()
    user = User.objects.create_user("head", password="unused-password-1")  # noqa: S106 - throwaway database
    user.groups.add(Group.objects.get(name="Head of sales"))
    client = Client()
    client.force_login(user)
    pages: dict[str, Any] = {}
    for name, path in report_pages():
        for _ in range(2):
            response = client.get(path)
        if response.status_code != 200:
            pages[name] = {"path": path, "status": response.status_code}
            continue
        times = []
        for _ in range(runs):
            before = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - before) * 1000)
            assert response.status_code == 200, (path, response.status_code)
        pages[name] = {
            "path": path,
            "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(_percentile(times, 0.95), 1),
            "min_ms": round(min(times), 1),
            "max_ms": round(max(times), 1),
            "runs": runs,
        }
    return {
        "deals": deals,
        "years": years,
        "seed_seconds": round(seeded, 1),
        "stuck_refresh_seconds": round(stuck_refresh, 1),
        "open_deals": open_deals,
        "open_deals_created_over_a_year_ago": open_year_old,
        "pages": pages,
    }


def _database(server_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def _run_measure(url: str, deals: int, runs: int, years: float = 2.0) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.reports", "--measure", url, "--deals", str(deals)]
    output = subprocess.run(  # noqa: S603 - this module, on a throwaway database
        [*command, "--runs", str(runs), "--years", str(years)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument(
        "--long-history",
        action="store_true",
        help="also measure --large deals created over a history as many times longer (the same deals per "
        "year as --small over two years), against --small",
    )
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--deals", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--years", type=float, default=2.0, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.measure:
        print(json.dumps(measure(options.measure, options.deals, options.runs, options.years)))
        return 0

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    from tests.support.services import PostgresServer, RedisServer

    server, broker = PostgresServer().start(), RedisServer().start()
    long = None
    try:
        small_url, large_url = _database(server.url, "small"), _database(server.url, "large")
        small = _run_measure(small_url, options.small, options.runs)
        large = _run_measure(large_url, options.large, options.runs)
        if options.long_history:
            years = 2.0 * options.large / options.small
            long = _run_measure(_database(server.url, "long"), options.large, options.runs, years)
    finally:
        broker.stop()
        server.stop()
    failed = _print(small, large)
    if long is not None:
        print()
        print(
            f"the same deals per year, a longer history: {long['deals']} deals over {long['years']:g} years"
        )
        failed = _print(small, long) or failed
    return failed


def _print(small: dict[str, Any], large: dict[str, Any]) -> int:
    for row in (small, large):
        row.setdefault("years", 2.0)
    first = f"{small['deals']} deals over {small['years']:g} years in {small['seed_seconds']} s"
    print(f"seeded {first}, {large['deals']} over {large['years']:g} years in {large['seed_seconds']} s")
    print(
        f"stuck states' refresh (the beat task): {small.get('stuck_refresh_seconds')} s and "
        f"{large.get('stuck_refresh_seconds')} s; open deals {small.get('open_deals')} and "
        f"{large.get('open_deals')} (created over a year ago: "
        f"{small.get('open_deals_created_over_a_year_ago')} and "
        f"{large.get('open_deals_created_over_a_year_ago')})"
    )
    header = (
        f"{'page':<28}{'p50 small':>10}{'p50 large':>10}{'ratio':>7}{'p95 large':>10}  spread large (min-max)"
    )
    print(header)
    failed = []
    for name, row in small["pages"].items():
        big = large["pages"].get(name, {})
        if "p50_ms" not in row or "p50_ms" not in big:
            print(f"{name:<28} answered {row.get('status')} / {big.get('status')}")
            failed.append(name)
            continue
        ratio = big["p50_ms"] / max(row["p50_ms"], 0.1)
        met = ratio <= RATIO_TARGET and big["p95_ms"] <= P95_TARGET_MS
        if not met:
            failed.append(name)
        print(
            f"{name:<28}{row['p50_ms']:>10.1f}{big['p50_ms']:>10.1f}{ratio:>7.2f}{big['p95_ms']:>10.1f}"
            f"  {big['min_ms']:.1f}-{big['max_ms']:.1f}{'' if met else '  MISSED'}"
        )
    if not small["pages"]:
        print("no report page found in apps.reports.urls")
        return 1
    print(
        f"targets: ratio ≤ {RATIO_TARGET}, p95 at {large['deals']} deals ≤ {P95_TARGET_MS:.0f} ms: "
        + ("met by every page" if not failed else f"missed by {', '.join(failed)}")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
