from __future__ import annotations

from dataclasses import asdict

from apps.reports.framework import Chart, Column, Kind, Scope, Table, report_register
from apps.reports.selectors.pipeline import pipeline_by_manager, pipeline_by_stage

DEALS = Column(
    "deals",
    "Open deals",
    Kind.COUNT,
    "Deals not won or lost that were in the stage at the end of the period.",
)
VALUE = Column("value", "Value", Kind.MONEY, "Sum of those deals' current budget (Kommo's price).")
SHARE = Column(
    "share_of_value",
    "Share of value (%)",
    Kind.PERCENT,
    "The row's value as a percentage of the value of all open deals shown.",
)


@report_register(
    slug="pipeline",
    title="Pipeline by buying stage",
    summary="Open deals per stage and per manager: how many, their value and its share.",
    order=10,
)
def pipeline(scope: Scope) -> list[Table]:
    return [
        Table(
            key="stages",
            title="Open deals by stage",
            columns=[Column("stage", "Stage"), DEALS, VALUE, SHARE],
            rows=[asdict(row) for row in pipeline_by_stage(scope=scope)],
            chart=Chart(labels="stage", series=["value"], description="Value of open deals by stage"),
        ),
        Table(
            key="managers",
            title="Open deals by manager",
            columns=[Column("manager", "Manager"), DEALS, VALUE, SHARE],
            rows=[asdict(row) for row in pipeline_by_manager(scope=scope)],
            chart=Chart(
                labels="manager",
                series=["value"],
                description="Value of open deals by manager",
                horizontal=True,
            ),
        ),
    ]
