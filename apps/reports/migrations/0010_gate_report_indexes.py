"""Indexes the gates page's plans need on PostgreSQL (EXPLAIN on 100,000 deals; docs/reports.md), as
reports.0007: on other apps' tables, serving only the reports, so created here as SQL; SQLite gets none."""

from __future__ import annotations

from typing import Any

from django.db import migrations

INDEXES = {
    # The period's blocks with what the page counts (rule, outcome, deal), read from the index alone.
    "reports_decision_blocks": "gates_gatedecision (decided_at) INCLUDE (lead_id, rule_id, outcome)"
    " WHERE outcome IN ('blocked', 'would_block')",
    # Every decision of a deal at a rule in order (the time to pass), read from the index alone.
    "reports_decision_deal_rule": "gates_gatedecision (lead_id, rule_id, decided_at, id) INCLUDE (outcome)",
    # The deals not deleted with the columns the filters read: a probe per decision or stay instead of a
    # hash of the whole (wide) deals table.
    "reports_lead_live": "kommo_lead (id) INCLUDE (pipeline_kommo_id, responsible_user_kommo_id, account_id)"
    " WHERE NOT is_deleted",
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
        ("gates", "0003_condition_time_and_objection"),
        ("reports", "0009_stuck_page_state"),
    ]

    operations = [migrations.RunPython(indexes_create, indexes_drop, elidable=False)]
