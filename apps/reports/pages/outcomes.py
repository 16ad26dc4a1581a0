from __future__ import annotations

from dataclasses import asdict

from apps.reports.framework import Chart, Column, Kind, Scope, Table, report_register
from apps.reports.selectors.outcomes import losses_by_stage, outcomes


@report_register(
    slug="outcomes",
    title="Outcomes",
    summary="Win rate, how long won deals took, and why deals were lost at which stage.",
    order=80,
)
def outcomes_page(scope: Scope) -> list[Table]:
    reasons, losses = losses_by_stage(scope=scope)
    reason_columns = [
        Column(key, label, Kind.COUNT) for key, label in (reason.split("|", 1) for reason in reasons)
    ]
    return [
        Table(
            key="outcomes",
            title="Won and lost",
            columns=[
                Column("manager", "Manager"),
                Column("won", "Won", Kind.COUNT, "Deals that entered won in the period."),
                Column("lost", "Lost", Kind.COUNT, "Deals that entered lost in the period."),
                Column("win_rate", "Win rate (%)", Kind.PERCENT, "Won ÷ (won + lost), as a percentage."),
                Column("won_value", "Value won", Kind.MONEY, "Sum of the won deals' budget."),
                Column(
                    "cycle_median",
                    "Cycle, median (days)",
                    Kind.DAYS,
                    "Median time of the won deals from their creation to their win.",
                ),
                Column(
                    "cycle_p75", "Cycle, 75th percentile (days)", Kind.DAYS, "Three quarters were shorter."
                ),
            ],
            rows=[asdict(row) for row in outcomes(scope=scope)],
            chart=Chart(
                labels="manager", series=["won", "lost"], description="Deals won and lost by manager"
            ),
        ),
        Table(
            key="losses",
            title="Loss reasons by the stage lost at",
            columns=[
                Column("stage", "Lost at stage"),
                Column(
                    "total", "Lost", Kind.COUNT, "Deals whose stay in the stage ended lost in the period."
                ),
                *reason_columns,
            ],
            rows=losses,
            chart=Chart(
                labels="stage",
                series=[column.key for column in reason_columns],
                description="Deals lost at each stage, by loss reason",
                stacked=True,
            ),
            notes=["Each reason column counts the deals lost at the stage with that Kommo loss reason."],
        ),
    ]
