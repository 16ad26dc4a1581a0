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
two years, so ten times the deals per quarter; a third database (``--no-long-history`` leaves it out) holds
the large account's deals created over a history as many times longer (the small one's deals per year),
measured against the small one: what grows there is the history, not the period's volume. The BI export has a
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


SKIPPED = ("set_config(",)  # report_queries' own settings, not a page's reading


def _plan_buffers(node: dict[str, Any]) -> int:
    return int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))


def _plan_nodes(node: dict[str, Any], depth: int = 0) -> list[dict[str, Any]]:
    """Every node of an ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` plan, depth first: what it is, the rows
    it gave (over all its loops) and the shared buffers it touched itself (its children's left out)."""
    children = node.get("Plans", [])
    own = _plan_buffers(node) - sum(_plan_buffers(child) for child in children)
    what = " ".join(
        str(part)
        for part in (
            node.get("Node Type"),
            node.get("Index Name") or node.get("Relation Name") or "",
            f"({node['Parent Relationship']})"
            if node.get("Parent Relationship") in ("InitPlan", "SubPlan")
            else "",
        )
        if part
    )
    found = [
        {
            "depth": depth,
            "node": what,
            "rows": round(float(node.get("Actual Rows", 0)) * float(node.get("Actual Loops", 1))),
            "loops": node.get("Actual Loops", 1),
            "buffers": own,
        }
    ]
    for child in children:
        found.extend(_plan_nodes(child, depth + 1))
    return found


class _Capture:
    """A database execute wrapper that keeps each statement and its parameters."""

    def __init__(self, into: list[tuple[str, Any]]) -> None:
        self.into = into

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if not many:
            self.into.append((sql, params))
        return execute(sql, params, many, context)


def measure_buffers(database_url: str, deals: int, years: float, query: str = "") -> dict[str, Any]:
    """In this process: seed ``deals`` over ``years`` into the database unless it holds a synthetic account
    already, then fetch every report page once more after two warm-up requests, capture its SQL and run
    each statement again under ``EXPLAIN (ANALYZE, BUFFERS)`` with the report queries' settings (JIT and
    parallel workers off): per page the shared buffers (hit + read) of every query and its plan's nodes.

    Buffers do not depend on the machine's load, so they compare the sizes where the timings cannot: a
    page whose plans read only the period's rows and the open deals touches about as many pages whatever
    the length of the history. ``query``: filters added to every page's address (``period=last_quarter``)."""
    from benchmarks.support import django_start

    django_start("benchmarks.settings", DATABASE_URL=database_url)
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from apps.kommo.models import KommoAccount, Lead
    from apps.reports.export.stuck import stuck_states_refresh
    from apps.reports.sql import report_queries
    from apps.users.models import User

    if not Lead.objects.exists():
        call_command("reports_seed_synthetic", deals=deals, years=years, stdout=sys.stderr)
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
        for account in KommoAccount.objects.all():
            stuck_states_refresh(account=account)
    user = User.objects.filter(username="head").first() or User.objects.create_user(
        "head",
        password="unused-password-1",  # noqa: S106 - throwaway database
    )
    user.groups.add(Group.objects.get(name="Head of sales"))
    client = Client()
    client.force_login(user)
    pages: dict[str, Any] = {}
    for name, page in report_pages():
        path = f"{page}?{query}" if query else page
        for _ in range(2):
            client.get(path)
        captured: list[tuple[str, Any]] = []
        with connection.execute_wrapper(_Capture(captured)):
            status = client.get(path).status_code
        queries = []
        for sql, params in captured:
            start = sql.lstrip()[:6].upper()
            if start not in ("SELECT", "WITH") or any(skip in sql for skip in SKIPPED):
                continue
            with report_queries(), connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", params)
                (raw,) = cursor.fetchone()
            explained = (json.loads(raw) if isinstance(raw, str) else raw)[0]
            queries.append(
                {
                    "sql": " ".join(sql.split())[:300],
                    "buffers": _plan_buffers(explained["Plan"]),
                    "ms": round(float(explained.get("Execution Time", 0.0)), 2),
                    "nodes": _plan_nodes(explained["Plan"]),
                }
            )
        pages[name] = {
            "path": path,
            "status": status,
            "buffers": sum(query["buffers"] for query in queries),
            "queries": queries,
        }
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM kommo_lead")
        (counted,) = cursor.fetchone()
    return {"deals": counted, "years": years, "pages": pages}


def _run_child(mode: str, url: str, deals: int, years: float, *options: str) -> dict[str, Any]:
    """Runs this module as ``--measure`` or ``--measure-buffers`` of the database at ``url`` in a process of
    its own, and returns the JSON it prints last."""
    command = [sys.executable, "-m", "benchmarks.reports", mode, url, "--deals", str(deals)]
    output = subprocess.run(  # noqa: S603 - this module, on a throwaway or named database
        [*command, "--years", str(years), *options],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def _run_measure_buffers(url: str, deals: int, years: float, query: str) -> dict[str, Any]:
    return _run_child("--measure-buffers", url, deals, years, "--query", query)


def buffers_main(
    small_deals: int, large_deals: int, databases: list[str] | None, detail: bool, query: str = ""
) -> int:
    """Seeds (or reads) the small account over two years and the large one over a history as many times
    longer, and prints each page's shared buffers at both and their ratio (target ≤ 2)."""
    years = 2.0 * large_deals / small_deals
    server = None
    if databases is None:
        sys.path.insert(0, str(ROOT))
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
        from tests.support.services import PostgresServer

        server = PostgresServer().start()
        databases = [_database(server.url, "small"), _database(server.url, "long")]
    try:
        small = _run_measure_buffers(databases[0], small_deals, 2.0, query)
        large = _run_measure_buffers(databases[1], large_deals, years, query)
    finally:
        if server is not None:
            server.stop()
    return _print_buffers(small, large, detail)


def _print_buffers(small: dict[str, Any], large: dict[str, Any], detail: bool) -> int:
    print(
        f"shared buffers (hit + read) of each page's queries under EXPLAIN (ANALYZE, BUFFERS): "
        f"{small['deals']} deals over {small['years']:g} years against {large['deals']} over "
        f"{large['years']:g} years"
    )
    print(f"{'page':<28}{'queries':>8}{'small':>10}{'large':>10}{'ratio':>7}  biggest query at large (ratio)")
    failed = []
    for name, row in small["pages"].items():
        big = large["pages"].get(name)
        if big is None or row["status"] != 200 or big["status"] != 200:
            print(f"{name:<28} answered {row['status']} / {big and big['status']}")
            failed.append(name)
            continue
        ratio = big["buffers"] / max(row["buffers"], 1)
        if ratio > RATIO_TARGET:
            failed.append(name)
        pairs = list(zip(row["queries"], big["queries"], strict=False))
        top = max(pairs, key=lambda pair: pair[1]["buffers"], default=None)
        biggest = f"{top[1]['buffers']} ({top[1]['buffers'] / max(top[0]['buffers'], 1):.2f})" if top else ""
        print(
            f"{name:<28}{len(big['queries']):>8}{row['buffers']:>10}{big['buffers']:>10}{ratio:>7.2f}  "
            f"{biggest}{'' if ratio <= RATIO_TARGET else '  MISSED'}"
        )
        if detail:
            _print_detail(row, big)
    print(
        f"target: buffers at {large['deals']} deals ≤ {RATIO_TARGET:g} times at {small['deals']}: "
        + ("met by every page" if not failed else f"missed by {', '.join(failed)}")
    )
    return 1 if failed else 0


def _print_detail(small: dict[str, Any], large: dict[str, Any]) -> None:
    """The queries of a page whose buffers grew more than the target, with their plans' nodes at both
    sizes (those that touched any buffer or gave rows)."""
    if len(small["queries"]) != len(large["queries"]):
        print(f"    {len(small['queries'])} queries at the small size, {len(large['queries'])} at the large")
    for index, (little, big) in enumerate(zip(small["queries"], large["queries"], strict=False)):
        if big["buffers"] <= RATIO_TARGET * max(little["buffers"], 1) or big["buffers"] < 50:
            continue
        grew = f"{little['buffers']} -> {big['buffers']} buffers, {big['ms']} ms"
        print(f"    query {index}: {grew}: {big['sql']}")
        for label, query in (("small", little), ("large", big)):
            print(f"      {label}:")
            for node in query["nodes"]:
                indent = "  " * node["depth"]
                print(
                    f"        {indent}{node['node']}: rows {node['rows']}, loops {node['loops']},"
                    f" buffers {node['buffers']}"
                )


def _database(server_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def _run_measure(url: str, deals: int, runs: int, years: float = 2.0) -> dict[str, Any]:
    return _run_child("--measure", url, deals, years, "--runs", str(runs))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument(
        "--long-history",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure --large deals created over a history as many times longer (the same deals per "
        "year as --small over two years), against --small: the issue's reading, on by default",
    )
    parser.add_argument(
        "--buffers",
        action="store_true",
        help="instead of timing: the shared buffers each page's queries touch (EXPLAIN (ANALYZE, BUFFERS)), "
        "--small deals over two years against --large over a history as many times longer; independent of "
        "the machine's load",
    )
    parser.add_argument(
        "--databases",
        nargs=2,
        metavar=("SMALL_URL", "LARGE_URL"),
        help="with --buffers: two databases to read (each seeded first when it holds no deal) instead of a "
        "throwaway server",
    )
    parser.add_argument(
        "--detail", action="store_true", help="with --buffers: the plan nodes of every query over the ratio"
    )
    parser.add_argument(
        "--query", default="", help="with --buffers: filters for every page, e.g. period=last_quarter"
    )
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--measure-buffers", help=argparse.SUPPRESS)
    parser.add_argument("--deals", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--years", type=float, default=2.0, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.measure:
        print(json.dumps(measure(options.measure, options.deals, options.runs, options.years)))
        return 0
    if options.measure_buffers:
        print(
            json.dumps(measure_buffers(options.measure_buffers, options.deals, options.years, options.query))
        )
        return 0
    if options.buffers:
        return buffers_main(options.small, options.large, options.databases, options.detail, options.query)

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
