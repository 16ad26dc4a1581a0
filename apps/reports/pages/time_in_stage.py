from __future__ import annotations

from dataclasses import asdict

from apps.reports.framework import Chart, Column, Kind, Scope, Table, report_register
from apps.reports.selectors.time_in_stage import time_in_stage


@report_register(
    slug="time-in-stage",
    title="Time in stage",
    summary="How long deals stayed in each stage (median, 75th percentile) and how old the open stays are.",
    order=30,
)
def time_in_stage_page(scope: Scope) -> list[Table]:
    return [
        Table(
            key="stages",
            title="Days in each stage",
            columns=[
                Column("stage", "Stage"),
                Column(
                    "completed", "Completed stays", Kind.COUNT, "Stays in the stage that ended in the period."
                ),
                Column(
                    "median",
                    "Median (days)",
                    Kind.DAYS,
                    "Median length of those stays, entering to leaving; each stay on its own.",
                ),
                Column(
                    "p75", "75th percentile (days)", Kind.DAYS, "Three quarters of those stays were shorter."
                ),
                Column(
                    "cumulative_median",
                    "Cumulative median (days)",
                    Kind.DAYS,
                    "Median of each such stay plus the deal's earlier stays in the same stage (deals that "
                    "came back).",
                ),
                Column(
                    "open", "Open stays", Kind.COUNT, "Deals in the stage at the end of the period (now)."
                ),
                Column(
                    "open_median_age",
                    "Open: median age (days)",
                    Kind.DAYS,
                    "Median time those deals had spent in their current stay at the end of the period.",
                ),
                Column("open_oldest", "Open: oldest (days)", Kind.DAYS, "The longest such time."),
            ],
            rows=[asdict(row) for row in time_in_stage(scope=scope)],
            chart=Chart(
                labels="stage",
                series=["median", "p75", "open_median_age"],
                description="Median and 75th percentile of days per stage, and the open stays' median age",
            ),
        )
    ]
