from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from apps.reports.framework import Chart, Column, Kind, Scope, Table, report_register
from apps.reports.selectors.coverage import (
    Coverage,
    coverage_by_manager,
    coverage_by_stage,
    coverage_total,
    coverage_trend,
)
from apps.reports.selectors.scoped import scope_account, scope_leads

DEALS = Column("deals", "Open deals", Kind.COUNT, "Deals not deleted, in a stage neither won nor lost.")
VALUE = Column("value", "Value", Kind.MONEY, "Sum of those deals' budget (Kommo's price).")
NO_DM = Column(
    "without_dm",
    "No decision maker",
    Kind.COUNT,
    "Open deals none of whose stakeholders holds a decision-maker role.",
)
NO_DM_SHARE = Column(
    "without_dm_share", "No decision maker (% of deals)", Kind.PERCENT, "No decision maker ÷ open deals."
)
NO_DM_VALUE = Column(
    "without_dm_value_share",
    "No decision maker (% of value)",
    Kind.PERCENT,
    "Their value ÷ the value of the open deals.",
)
APPROVED = Column(
    "dm_approved",
    "Decision maker approved",
    Kind.COUNT,
    "Open deals with a decision maker whose approval is approved.",
)
APPROVED_SHARE = Column(
    "dm_approved_share", "Decision maker approved (% of deals)", Kind.PERCENT, "Approved ÷ open deals."
)
APPROVED_VALUE = Column(
    "dm_approved_value_share",
    "Decision maker approved (% of value)",
    Kind.PERCENT,
    "Their value ÷ the value of the open deals.",
)
FIGURES = [DEALS, VALUE, NO_DM, NO_DM_SHARE, NO_DM_VALUE, APPROVED, APPROVED_SHARE, APPROVED_VALUE]


def _percent(share: float | None) -> float | None:
    return None if share is None else 100.0 * share


def _row(first: str, coverage: Coverage) -> dict[str, Any]:
    return {
        first: coverage.label,
        "deals": coverage.deals,
        "value": coverage.value,
        "without_dm": coverage.without_dm,
        "without_dm_share": _percent(coverage.without_dm_share),
        "without_dm_value_share": _percent(coverage.without_dm_value_share),
        "dm_approved": coverage.dm_approved,
        "dm_approved_share": _percent(coverage.dm_approved_share),
        "dm_approved_value_share": _percent(coverage.dm_approved_value_share),
    }


def _shares_chart(labels: str, description: str, **options: Any) -> Chart:
    return Chart(
        labels=labels, series=["without_dm_share", "dm_approved_share"], description=description, **options
    )


@report_register(
    slug="coverage",
    title="Decision-maker coverage",
    summary="Open deals with no identified decision maker, and with one who approved: now, and week by week.",
    order=50,
)
def coverage(scope: Scope) -> list[Table]:
    leads = scope_leads(scope)
    stages = coverage_by_stage(account=None, leads_qs=leads)
    managers = coverage_by_manager(account=None, leads_qs=leads)
    stage_rows = [_row("stage", row) for row in stages]
    if stages:
        stage_rows.append(_row("stage", coverage_total(stages)))
    first_week = timezone.localtime(scope.start).date()
    first_week -= dt.timedelta(days=first_week.weekday())
    last_day = timezone.localtime(scope.until).date()
    own = [scope.own_kommo_user_id or -1] if scope.restricted else None
    managers_filter = [scope.manager.kommo_id] if scope.manager is not None else own
    trend = coverage_trend(
        account=scope_account(scope),
        since=first_week,
        until=last_day,
        pipeline_kommo_ids=[scope.pipeline.kommo_id] if scope.pipeline is not None else None,
        responsible_user_kommo_ids=managers_filter,
    )
    return [
        Table(
            key="stages",
            title="Now, by stage",
            columns=[Column("stage", "Stage"), *FIGURES],
            rows=stage_rows,
            chart=_shares_chart(
                "stage", "Share of open deals without a decision maker and with one who approved, by stage"
            ),
            notes=["Today's open deals: the period does not apply. The last row counts every stage."],
        ),
        Table(
            key="managers",
            title="Now, by manager",
            columns=[Column("manager", "Manager"), *FIGURES],
            rows=[_row("manager", row) for row in managers],
            chart=_shares_chart(
                "manager",
                "Share of open deals without a decision maker and with one who approved, by manager",
                horizontal=True,
            ),
            notes=["A deal counts under its current responsible manager."],
        ),
        Table(
            key="trend",
            title="Week by week",
            columns=[Column("week", "Week of"), *FIGURES],
            rows=[_row("week", row) for row in trend],
            chart=_shares_chart(
                "week",
                "Share of open deals without a decision maker and with one who approved, by week",
                kind="line",
            ),
            notes=[
                "Weekly snapshots of the open deals (the last reading of each week), in the weeks that start "
                "in the period.",
                "Weeks before the first snapshot are rebuilt from the stage history and the stakeholders' "
                "history (who was on each deal then, in which role, with which approval); for an account "
                "without the latter, a decision maker counts from their contact's creation in Kommo and "
                "whether they had approved is not known (empty).",
            ],
            empty="No weekly snapshot in this period yet: the first is taken within six hours of the start.",
        ),
    ]
