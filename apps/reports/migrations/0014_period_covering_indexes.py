"""Indexes that let the report pages read only the period's rows and the open deals, whatever the length of
the history (PostgreSQL only, as reports.0007; ``python -m benchmarks.reports --buffers``, docs/reports.md).

- The stays by the time they ended also cover their ``id`` and ``earlier_seconds``: time in stage counts
  and sums them, and fetched every stay of the period from the table (one page per few stays).
- The open stays of open deals cover their ``id``: counted by time in stage and legal review, and without
  it PostgreSQL preferred the index of every open stay (the won and lost deals' too, which grow with the
  history) to fetching the rows.
- The open deals by value cover the responsible manager's key: the pipeline's and the stuck page's per
  manager tables join the managers by it, and fetched every open deal from the table for it.
- The deleted deals: the reports leave them out by this list (``Scope.deals(join=False)``) instead of
  joining every deal of the account to the period's rows to read their flag.
- A loss reason's name by reason, and the won and lost deals' final stays by when they began (below).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

REPLACED = {
    "reports_stay_left": (
        "kommo_stagestay (left_at) INCLUDE (lead_id, status_id, status_kommo_id, pipeline_id,"
        " pipeline_kommo_id, entered_at, left_how) WHERE left_at IS NOT NULL",
        "kommo_stagestay (left_at) INCLUDE (lead_id, status_id, status_kommo_id, pipeline_id,"
        " pipeline_kommo_id, entered_at, left_how, id, earlier_seconds) WHERE left_at IS NOT NULL",
    ),
    "reports_stay_open_working": (
        "kommo_stagestay (status_id) INCLUDE (lead_id, entered_at, status_kommo_id, pipeline_id,"
        " pipeline_kommo_id) WHERE left_at IS NULL AND status_kommo_id NOT IN (142, 143)",
        "kommo_stagestay (status_id) INCLUDE (lead_id, entered_at, status_kommo_id, pipeline_id,"
        " pipeline_kommo_id, id) WHERE left_at IS NULL AND status_kommo_id NOT IN (142, 143)",
    ),
    "reports_lead_open_value": (
        "kommo_lead (price DESC, id) INCLUDE (status_id, responsible_user_kommo_id, pipeline_kommo_id,"
        " account_id) WHERE NOT is_deleted AND status_kommo_id NOT IN (142, 143)",
        "kommo_lead (price DESC, id) INCLUDE (status_id, responsible_user_kommo_id, pipeline_kommo_id,"
        " account_id, responsible_user_id) WHERE NOT is_deleted AND status_kommo_id NOT IN (142, 143)",
    ),
}
ADDED = {
    "reports_lead_deleted": "kommo_lead (id) WHERE is_deleted",
    # A loss reason's name as the deals carry it (Kommo's ``_embedded.loss_reason``), by reason: the
    # outcomes page names each reason from the first deal that has it instead of reading every deal lost
    # for it. On the expression and not partial: ANALYZE then knows that most deals carry no name, which
    # the planner uses (partial on the name, the index was ignored: the planner expected the first deal
    # read to have one, and scanned the table for it).
    "reports_lead_loss_reason_name": "kommo_lead (loss_reason_kommo_id,"
    " (raw #>> '{_embedded,loss_reason,0,name}'))",
    # The stays of the won and lost deals in their final stage, by when they began: the deals closed
    # since a moment (the funnel's "won now" among the period's deals).
    "reports_stay_closed": "kommo_stagestay (entered_at) INCLUDE (lead_id, status_kommo_id)"
    " WHERE left_at IS NULL AND status_kommo_id IN (142, 143)",
}


def _postgres(schema_editor: Any) -> bool:
    return bool(schema_editor.connection.vendor == "postgresql")


def indexes_widen(apps: Any, schema_editor: Any) -> None:
    if not _postgres(schema_editor):
        return
    for name, (_, after) in REPLACED.items():
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")
        schema_editor.execute(f"CREATE INDEX {name} ON {after}")
    for name, definition in ADDED.items():
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {definition}")


def indexes_narrow(apps: Any, schema_editor: Any) -> None:
    if not _postgres(schema_editor):
        return
    for name in ADDED:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")
    for name, (before, _) in REPLACED.items():
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")
        schema_editor.execute(f"CREATE INDEX {name} ON {before}")


class Migration(migrations.Migration):
    dependencies = [("reports", "0013_lead_live_covering")]

    operations = [migrations.RunPython(indexes_widen, indexes_narrow, elidable=False)]
