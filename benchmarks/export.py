"""BI export benchmark, run by ``benchmarks/reports.py`` on its two seeded databases (no seeding of its own).

1. Throughput: ``GET /api/v1/export/<table>?format=csv`` of ``deals`` and ``stage_changes`` of the large
   account (100,000 deals, about 1,000,000 stage changes) from the portal served by gunicorn (production
   configuration, one sync worker), read whole by a client, against PostgreSQL's own
   ``COPY (SELECT …) TO STDOUT WITH CSV`` of the same columns (the ``bi`` view's query) read whole by
   psycopg, in the same run, alternating, three times each. Reported: rows per second of each, the ratio
   export ÷ COPY of the medians (target ≥ 0.3).
2. Memory: the peak resident memory (``VmHWM``) of a fresh web worker after exporting 10,000 rows
   (``deals`` of the small account) and of another after exporting about 1,000,000 rows
   (``stage_changes`` of the large one); target: at most 50 MB more.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

RATIO_TARGET = 0.3
MEMORY_TARGET_MB = 50.0


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def _download(url: str, key: str) -> tuple[int, float]:
    import requests

    started = time.perf_counter()
    rows = 0
    with requests.get(url, headers={"Authorization": f"Bearer {key}"}, stream=True, timeout=900) as response:
        response.raise_for_status()
        for chunk in response.iter_content(chunk_size=1 << 16):
            rows += chunk.count(b"\n")
    return rows - 1, time.perf_counter() - started  # the header is not a row


def _copy(database_url: str, sql: str) -> tuple[int, float]:
    import psycopg

    started = time.perf_counter()
    rows = 0
    with psycopg.connect(database_url) as connection, connection.cursor() as cursor:
        with cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)") as copy:
            for data in copy:
                rows += bytes(data).count(b"\n")
    return rows, time.perf_counter() - started


def measure(small_url: str, large_url: str, broker_url: str) -> dict[str, Any]:
    """Both parts; Django is set up here on the large database (for the keys and the tables' SQL)."""
    from benchmarks.support import Portal, django_start

    os.environ["GUNICORN_WORKERS"] = "1"
    os.environ["GUNICORN_TIMEOUT"] = "900"
    django_start("benchmarks.settings", DATABASE_URL=large_url)
    from apps.reports.export.keys import export_client_create
    from apps.reports.export.sql import view_sql
    from apps.reports.export.tables import TABLES

    key = export_client_create(name=f"bench {time.time()}")[1]
    results: dict[str, Any] = {"throughput": {}, "memory": {}}
    portal = Portal(
        settings_module="benchmarks.settings",
        database_url=large_url,
        broker_url=broker_url,
        start_timeout=180,
    )
    try:
        for name in ("deals", "stage_changes"):
            sql = view_sql(TABLES[name])
            export_runs, copy_runs = [], []
            _download(f"{portal.url}/api/v1/export/{name}?format=csv", key)  # warm-up
            for _ in range(3):
                rows, seconds = _download(f"{portal.url}/api/v1/export/{name}?format=csv", key)
                export_runs.append(rows / seconds)
                copied, copy_seconds = _copy(large_url, sql)
                copy_runs.append(copied / copy_seconds)
            assert rows == copied, (name, rows, copied)
            ratio = statistics.median(export_runs) / statistics.median(copy_runs)
            results["throughput"][name] = {
                "rows": rows,
                "export_rows_per_s": [round(value) for value in export_runs],
                "copy_rows_per_s": [round(value) for value in copy_runs],
                "ratio": round(ratio, 2),
                "meets_target": ratio >= RATIO_TARGET,
            }
    finally:
        portal.stop()

    # The small database has its own keys table: a key there too.
    peaks = {}
    for label, url, table in (("10k rows", small_url, "deals"), ("1M rows", large_url, "stage_changes")):
        small_key = _key_in(url) if url != large_url else key
        portal = Portal(
            settings_module="benchmarks.settings", database_url=url, broker_url=broker_url, start_timeout=180
        )
        try:
            [worker] = _children(portal.process.pid)
            rows, _ = _download(f"{portal.url}/api/v1/export/{table}?format=csv", small_key)
            peaks[label] = {"table": table, "rows": rows, "peak_mb": round(_peak_mb(worker), 1)}
        finally:
            portal.stop()
    growth = peaks["1M rows"]["peak_mb"] - peaks["10k rows"]["peak_mb"]
    results["memory"] = {**peaks, "growth_mb": round(growth, 1), "meets_target": growth <= MEMORY_TARGET_MB}
    return results


def _key_in(database_url: str) -> str:
    """A key in another database than Django's: the same row written with psycopg."""
    import psycopg

    from apps.reports.export.keys import KEY_SCHEME, key_hash

    prefix, secret = os.urandom(6).hex(), os.urandom(24).hex()
    key = f"{KEY_SCHEME}_{prefix}_{secret}"
    with psycopg.connect(database_url) as connection:
        connection.execute(
            "INSERT INTO reports_exportclient (name, key_prefix, key_hash, is_active, created, modified)"
            " VALUES (%s, %s, %s, true, now(), now())",
            [f"bench {prefix}", prefix, key_hash(key)],
        )
    return key


def report(results: dict[str, Any]) -> bool:
    print(
        "BI export (CSV over HTTP, gunicorn, one sync worker) against PostgreSQL's COPY of the same columns"
    )
    met = True
    for name, row in results["throughput"].items():
        met &= row["meets_target"]
        print(
            f"  {name:<14} {row['rows']:>8} rows  export {row['export_rows_per_s']} rows/s"
            f"  COPY {row['copy_rows_per_s']} rows/s  ratio {row['ratio']:.2f}"
            f" (target ≥ {RATIO_TARGET}){'' if row['meets_target'] else '  MISSED'}"
        )
    memory = results["memory"]
    met &= memory["meets_target"]
    small, large = memory["10k rows"], memory["1M rows"]
    print(
        f"  web worker peak memory: {small['peak_mb']} MB after {small['rows']} rows,"
        f" {large['peak_mb']} MB after {large['rows']} rows: +{memory['growth_mb']} MB"
        f" (target ≤ +{MEMORY_TARGET_MB:.0f}){'' if memory['meets_target'] else '  MISSED'}"
    )
    return met
