"""BI export benchmark: ``python -m benchmarks.export [--small 10000 --large 100000]``.

Run on its own, it starts a throwaway PostgreSQL and Redis, makes two databases and fills them with
set-based SQL (:func:`fill`: ``INSERT … SELECT … FROM generate_series``; 100,000 deals with 10 stage
changes, 11 stays and 4 stakeholders each took 6.4 minutes at a load average of 16 on 2 cores, where the
row-by-row synthetic seed took 10 to 17), runs the stuck-deals refresh that the export's ``stuck``
columns read, and measures.

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

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

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
    # Still needed with the stream's heartbeat (apps/core/heartbeat.py): at 100,000 deals the deals query's
    # COPY computes and sorts every row before its first one, a wait in which nothing beats.
    os.environ["GUNICORN_TIMEOUT"] = "900"
    django_start("benchmarks.settings", DATABASE_URL=large_url)
    from apps.kommo.models import KommoAccount, Lead
    from apps.reports.export.keys import export_client_create
    from apps.reports.export.sql import view_sql
    from apps.reports.export.stuck import stuck_states_refresh
    from apps.reports.export.tables import TABLES

    key = export_client_create(name=f"bench {time.time()}")[1]
    results: dict[str, Any] = {"throughput": {}, "memory": {}, "load": {"before": os.getloadavg()}}
    # What the beat task does before any export: the stuck columns' answer for every open deal.
    started = time.perf_counter()
    written = sum(stuck_states_refresh(account=account) for account in KommoAccount.objects.all())
    results["stuck_refresh"] = {
        "deals": Lead.objects.count(),
        "stuck": written,
        "seconds": round(time.perf_counter() - started, 1),
    }
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
    peaks: dict[str, dict[str, Any]] = {}
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
    results["load"]["after"] = os.getloadavg()
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
    if "stuck_refresh" in results:
        refresh = results["stuck_refresh"]
        print(
            f"  stuck refresh (beat task) over {refresh['deals']} deals: {refresh['seconds']} s,"
            f" {refresh['stuck']} rows written"
        )
    met = True
    for name, row in results["throughput"].items():
        met &= row["meets_target"]
        export_runs, copy_runs = row["export_rows_per_s"], row["copy_rows_per_s"]
        print(
            f"  {name:<14} {row['rows']:>8} rows  export {export_runs} rows/s"
            f" (spread {min(export_runs)}-{max(export_runs)})  COPY {copy_runs} rows/s"
            f" (spread {min(copy_runs)}-{max(copy_runs)})  ratio of medians {row['ratio']:.2f}"
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
    if "load" in results:
        before, after = results["load"]["before"], results["load"].get("after", results["load"]["before"])
        print(
            f"  load average (1, 5, 15 min) before {', '.join(f'{v:.2f}' for v in before)};"
            f" after {', '.join(f'{v:.2f}' for v in after)}"
        )
    return met


# -- the standalone run: its own servers, filled with set-based SQL --------------------------------------

WORKING_STAGES = 6
CHANGES_PER_DEAL = 10
STAKEHOLDERS_PER_DEAL = 4


# Deal g (1..deals): 3 in 10 won, 2 in 10 lost, the rest open in working stage g % 6; created up to a year
# ago. Move k (1..10) goes from working stage (k - 1) % 6 to k % 6 at created + k/11 of its age, the last
# one to the deal's final stage; stay k (0..10) lasts from move k (the creation for 0) to move k + 1.
# Stakeholder j of deal g is contact (g - 1) * 4 + j: roles in turn, a third approved, one in five with an
# objection. ("%%" is SQL's modulo: the statements take parameters.)
FILL_SQL = (
    """INSERT INTO kommo_lead (created, modified, account_id, kommo_id, raw, is_deleted, name, price,
        pipeline_id, pipeline_kommo_id, status_id, status_kommo_id, responsible_user_id,
        responsible_user_kommo_id, loss_reason_kommo_id, created_at, updated_at, closed_at)
    SELECT now(), now(), %(account)s, 10000000 + g,
        CASE WHEN g %% 8 = 0 THEN %(tags)s::jsonb ELSE '{}'::jsonb END,
        false, 'Deal ' || g, 1000 + (g * 7919) %% 90000, %(pipeline)s, %(pipeline_id)s,
        CASE WHEN g %% 10 < 3 THEN %(won)s WHEN g %% 10 < 5 THEN %(lost)s
             ELSE (%(stage_pks)s::bigint[])[1 + g %% %(stages)s] END,
        CASE WHEN g %% 10 < 3 THEN 142 WHEN g %% 10 < 5 THEN 143
             ELSE (%(stage_ids)s::bigint[])[1 + g %% %(stages)s] END,
        (%(managers)s::bigint[])[1 + g %% 20], 7000 + g %% 20,
        CASE WHEN g %% 10 IN (3, 4) THEN 5 END,
        now() - make_interval(days => 1 + g %% 365, secs => g %% 86400),
        now() - make_interval(hours => g %% 48),
        CASE WHEN g %% 10 < 5 THEN now() - make_interval(hours => g %% 48) END
    FROM generate_series(1, %(deals)s) AS g""",
    """INSERT INTO kommo_stagechange (account_id, lead_id, from_status_kommo_id, from_pipeline_kommo_id,
        to_status_kommo_id, to_pipeline_kommo_id, from_status_id, to_status_id, at, at_is_exact, source,
        sources, moved_by_id, moved_by_kommo_user_id, created)
    SELECT %(account)s, l.id, (%(stage_ids)s::bigint[])[1 + (k - 1) %% %(stages)s], %(pipeline_id)s,
        CASE WHEN k = %(moves)s THEN l.status_kommo_id
             ELSE (%(stage_ids)s::bigint[])[1 + k %% %(stages)s] END, %(pipeline_id)s,
        (%(stage_pks)s::bigint[])[1 + (k - 1) %% %(stages)s],
        CASE WHEN k = %(moves)s THEN l.status_id ELSE (%(stage_pks)s::bigint[])[1 + k %% %(stages)s] END,
        l.created_at + (now() - l.created_at) * k / (%(moves)s + 1), true,
        CASE WHEN k %% 3 = 0 THEN 'sync' ELSE 'webhook' END,
        CASE WHEN k %% 3 = 0 THEN '["sync"]'::jsonb ELSE '["webhook"]'::jsonb END,
        l.responsible_user_id, l.responsible_user_kommo_id, now()
    FROM kommo_lead l CROSS JOIN generate_series(1, %(moves)s) AS k
    WHERE l.account_id = %(account)s
    ORDER BY l.id, k""",
    """INSERT INTO kommo_stagestay (account_id, lead_id, pipeline_id, pipeline_kommo_id, status_id,
        status_kommo_id, entered_at, left_at, next_status_id, next_status_kommo_id, next_pipeline_kommo_id,
        left_how)
    SELECT %(account)s, l.id, %(pipeline)s, %(pipeline_id)s,
        CASE WHEN k = %(moves)s THEN l.status_id ELSE (%(stage_pks)s::bigint[])[1 + k %% %(stages)s] END,
        CASE WHEN k = %(moves)s THEN l.status_kommo_id
             ELSE (%(stage_ids)s::bigint[])[1 + k %% %(stages)s] END,
        l.created_at + (now() - l.created_at) * k / (%(moves)s + 1),
        CASE WHEN k < %(moves)s THEN l.created_at + (now() - l.created_at) * (k + 1) / (%(moves)s + 1) END,
        CASE WHEN k = %(moves)s - 1 THEN l.status_id
             WHEN k < %(moves)s THEN (%(stage_pks)s::bigint[])[1 + (k + 1) %% %(stages)s] END,
        CASE WHEN k = %(moves)s - 1 THEN l.status_kommo_id
             WHEN k < %(moves)s THEN (%(stage_ids)s::bigint[])[1 + (k + 1) %% %(stages)s] END,
        CASE WHEN k < %(moves)s THEN %(pipeline_id)s END,
        CASE WHEN k = %(moves)s THEN ''
             WHEN k = %(moves)s - 1 AND l.status_kommo_id = 142 THEN 'won'
             WHEN k = %(moves)s - 1 AND l.status_kommo_id = 143 THEN 'lost'
             WHEN (k + 1) %% %(stages)s = 0 THEN 'back' ELSE 'forward' END
    FROM kommo_lead l CROSS JOIN generate_series(0, %(moves)s) AS k
    WHERE l.account_id = %(account)s
    ORDER BY l.id, k""",
    """INSERT INTO kommo_contact (created, modified, account_id, kommo_id, raw, is_deleted, name, first_name,
        last_name, emails, phones)
    SELECT now(), now(), %(account)s, 50000000 + g, '{}'::jsonb, false, 'Person ' || g, 'Person', g::text,
        '[]'::jsonb, '[]'::jsonb
    FROM generate_series(1, %(deals)s * %(people)s) AS g""",
    """INSERT INTO stakeholders_stakeholder (account_id, lead_id, contact_id, role_id, approval_status,
        last_touch, objection_weight, name, source, notes, updated)
    SELECT %(account)s, l.id, c.id, (%(roles)s::bigint[])[1 + (c.kommo_id %% 4)],
        CASE WHEN c.kommo_id %% 3 = 0 THEN 'approved' ELSE 'pending' END,
        now() - make_interval(days => (c.kommo_id %% 40)::int),
        CASE WHEN c.kommo_id %% 5 = 0 THEN 0.70 END, c.name, 'contact_field', '', now()
    FROM kommo_contact c
    JOIN kommo_lead l ON l.account_id = %(account)s
        AND l.kommo_id = 10000000 + (c.kommo_id - 50000001) / %(people)s + 1
    WHERE c.account_id = %(account)s""",
)


def fill(deals: int) -> dict[str, Any]:
    """Fills Django's database with one account of ``deals`` deals, ``CHANGES_PER_DEAL`` stage changes
    and ``CHANGES_PER_DEAL + 1`` stays each (a walk through the working stages; 3 in 10 end won, 2 lost),
    and ``STAKEHOLDERS_PER_DEAL`` stakeholders with their contacts, in a handful of ``INSERT … SELECT``
    statements over ``generate_series``. Deterministic: the same ``deals`` give the same rows."""
    from django.db import connection, transaction

    from apps.kommo.models import KommoAccount, KommoUser, Pipeline, Status
    from apps.stakeholders.models import Role

    started = time.perf_counter()
    steps: dict[str, float] = {}
    with transaction.atomic():
        account = KommoAccount.objects.create(name="Synthetic", base_url="https://synthetic.kommo.com")
        pipeline = Pipeline.objects.create(account=account, kommo_id=1000, name="B2B sales")
        stages = [
            Status.objects.create(
                account=account,
                pipeline=pipeline,
                kommo_id=1001 + n,
                name=f"Stage {n + 1}",
                sort=10 * (n + 1),
            )
            for n in range(WORKING_STAGES)
        ]
        won, lost = (
            Status.objects.create(account=account, pipeline=pipeline, kommo_id=k, name=name, sort=10000 + k)
            for k, name in ((142, "Closed - won"), (143, "Closed - lost"))
        )
        managers = [
            KommoUser.objects.create(account=account, kommo_id=7000 + n, name=f"Manager {n + 1}")
            for n in range(20)
        ]
        params: dict[str, Any] = {
            "account": account.pk,
            "deals": deals,
            "pipeline": pipeline.pk,
            "pipeline_id": pipeline.kommo_id,
            "stage_pks": [stage.pk for stage in stages],
            "stage_ids": [stage.kommo_id for stage in stages],
            "stages": WORKING_STAGES,
            "won": won.pk,
            "lost": lost.pk,
            "managers": [manager.pk for manager in managers],
            "moves": CHANGES_PER_DEAL,
            "people": STAKEHOLDERS_PER_DEAL,
            "roles": list(Role.objects.order_by("pk").values_list("pk", flat=True)),
            "tags": '{"_embedded": {"tags": [{"id": 1, "name": "enterprise"}]}}',
        }
        with connection.cursor() as cursor:
            # The throwaway server's user is a superuser: the rows are right by construction, and checking
            # each foreign key at commit would take longer than the writes (as reports_seed_synthetic does).
            cursor.execute("SET LOCAL session_replication_role = replica")
            for statement in FILL_SQL:
                before = time.perf_counter()
                cursor.execute(statement, params)
                table = statement.split()[2]
                steps[table] = round(time.perf_counter() - before, 1)
    before = time.perf_counter()
    with connection.cursor() as cursor:
        for table in steps:
            cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(table)}")
    steps["vacuum analyze"] = round(time.perf_counter() - before, 1)
    return {"deals": deals, "fill_seconds": round(time.perf_counter() - started, 1), "steps": steps}


def _database(server_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def _child(*arguments: str) -> dict[str, Any]:
    """This module with ``arguments`` in a process of its own (Django is set up once per database)."""
    output = subprocess.run(  # noqa: S603 - this module, on the throwaway servers
        [sys.executable, "-m", "benchmarks.export", *arguments],
        cwd=ROOT,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--fill", nargs=2, metavar=("DATABASE_URL", "DEALS"), help=argparse.SUPPRESS)
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.fill:
        from benchmarks.support import django_start

        django_start("benchmarks.settings", DATABASE_URL=options.fill[0])
        print(json.dumps(fill(int(options.fill[1]))))
        return 0
    if options.measure:
        print(json.dumps(measure(*options.measure)))
        return 0

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    from tests.support.services import PostgresServer, RedisServer

    server, broker = PostgresServer().start(), RedisServer().start()
    try:
        small_url, large_url = _database(server.url, "small"), _database(server.url, "large")
        filled = [
            _child("--fill", url, str(deals))
            for url, deals in ((small_url, options.small), (large_url, options.large))
        ]
        results = _child("--measure", small_url, large_url, broker.url)
    finally:
        broker.stop()
        server.stop()
    for row in filled:
        steps = ", ".join(f"{name} {seconds} s" for name, seconds in row["steps"].items())
        print(f"filled {row['deals']} deals in {row['fill_seconds']} s ({steps})")
    return 0 if report(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
