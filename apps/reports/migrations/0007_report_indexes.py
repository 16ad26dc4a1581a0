"""Indexes the report pages' plans need on PostgreSQL (EXPLAIN on 100,000 deals; docs/reports.md,
"Performance"). The stays and deals are the kommo app's tables; these indexes serve only the reports, so
they live here, as SQL (``INCLUDE`` and partial indexes), and SQLite gets none."""

from __future__ import annotations

from typing import Any

from django.db import migrations

INDEXES = {
    # Stays that ended in a period, whatever the account (the scope names none by default): time in stage,
    # legal review, losses by stage, the stuck deals' usual times. Covering, so the period's rows are read
    # from the index alone.
    "reports_stay_left": "kommo_stagestay (left_at) INCLUDE (lead_id, status_id, status_kommo_id, pipeline_id,"
    " pipeline_kommo_id, entered_at, left_how) WHERE left_at IS NOT NULL",
    # Stays that began in a period: funnel, outcomes.
    "reports_stay_entered": "kommo_stagestay (entered_at) INCLUDE (lead_id, status_id, status_kommo_id,"
    " pipeline_id, pipeline_kommo_id, left_how)",
    # The open stays of open deals (not in won or lost): pipeline, open stays' ages, open legal reviews. The
    # open stays of closed deals — most of them — are left out.
    "reports_stay_open_working": "kommo_stagestay (status_id) INCLUDE (lead_id, entered_at, status_kommo_id,"
    " pipeline_id, pipeline_kommo_id) WHERE left_at IS NULL AND status_kommo_id NOT IN (142, 143)",
    # A deal's earlier stays in a stage (the cumulative time in stage), read from the index alone.
    "reports_stay_deal_stage": "kommo_stagestay (lead_id, status_kommo_id, left_at) INCLUDE (entered_at,"
    " pipeline_kommo_id)",
    # The open deals (coverage, stuck deals).
    "reports_lead_open": "kommo_lead (status_id) INCLUDE (price, responsible_user_kommo_id, pipeline_kommo_id,"
    " account_id) WHERE NOT is_deleted AND status_kommo_id NOT IN (142, 143)",
}


def indexes_create(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, definition in INDEXES.items():
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {definition}")


def indexes_drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("kommo", "0009_stage_stays"),
        ("reports", "0006_forecast"),
    ]

    operations = [migrations.RunPython(indexes_create, indexes_drop, elidable=False)]
