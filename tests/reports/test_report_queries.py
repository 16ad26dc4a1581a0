"""The report pages' queries on PostgreSQL: run with JIT compilation off, over the indexes of
``reports.0007`` (docs/reports.md, "Performance")."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
from django.db import connection

from apps.reports.sql import report_queries

indexes_migration = importlib.import_module("apps.reports.migrations.0007_report_indexes")
gate_indexes_migration = importlib.import_module("apps.reports.migrations.0010_gate_report_indexes")
period_indexes_migration = importlib.import_module("apps.reports.migrations.0014_period_covering_indexes")

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _setting(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        return str(cursor.fetchone()[0])


def test_a_reports_queries_run_without_jit_or_parallel_workers_and_the_rest_of_the_request_is_as_it_was() -> (
    None
):
    before = _setting("jit"), _setting("max_parallel_workers_per_gather")
    with report_queries():
        assert (_setting("jit"), _setting("max_parallel_workers_per_gather")) == ("off", "0")
    assert (_setting("jit"), _setting("max_parallel_workers_per_gather")) == before
    assert before[1] != "0"


def test_the_report_view_builds_its_page_inside_report_queries(client, world, monkeypatch) -> None:
    from apps.reports.framework import REPORTS
    from tests.reports.support import person

    seen = []
    page = dataclasses.replace(REPORTS["pipeline"], build=lambda scope: seen.append(_setting("jit")) or [])
    monkeypatch.setitem(REPORTS, "pipeline", page)
    client.force_login(person("head", "Head of sales"))

    assert client.get("/reports/pipeline/").status_code == 200
    assert seen == ["off"]


def test_the_indexes_the_plans_need_exist() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE indexname LIKE 'reports_%%'")
        found = {name for (name,) in cursor.fetchall()}
    assert {*indexes_migration.INDEXES, *gate_indexes_migration.INDEXES, "reports_lead_open_value"} <= found
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'reports_lead_live'")
        (definition,) = cursor.fetchone()
    assert "status_kommo_id, price, created_at" in definition  # reports.0013: probes read the deal from it


def test_the_period_indexes_cover_what_the_pages_read() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE indexname LIKE 'reports_%%'")
        found = dict(cursor.fetchall())
    assert set(period_indexes_migration.ADDED) <= set(found)
    # reports.0014: time in stage reads the stays of the period from the index alone, the open stays are
    # counted by their key, the open deals join their managers.
    assert "id, earlier_seconds" in found["reports_stay_left"]
    assert "pipeline_kommo_id, id)" in found["reports_stay_open_working"]
    assert "responsible_user_id" in found["reports_lead_open_value"]
