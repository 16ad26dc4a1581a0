from __future__ import annotations

from dataclasses import asdict

from apps.reports.framework import Chart, Column, Kind, Scope, Table, report_register
from apps.reports.selectors.funnel import funnel


@report_register(
    slug="funnel",
    title="Funnel",
    summary="Deals entering each stage in the period, and how many went on to the next stage and to won.",
    order=20,
)
def funnel_page(scope: Scope) -> list[Table]:
    return [
        Table(
            key="stages",
            title="Deals entering each stage",
            columns=[
                Column("stage", "Stage"),
                Column(
                    "entered",
                    "Entered",
                    Kind.COUNT,
                    "Deals that entered the stage in the period (created there, or moved in); a deal that "
                    "entered twice counts once.",
                ),
                Column(
                    "went_on",
                    "Went on",
                    Kind.COUNT,
                    "Of those, deals that left the stage forward (to a later stage, skips included, or won), "
                    "up to now.",
                ),
                Column("to_next", "To next stage (%)", Kind.PERCENT, "Went on as a percentage of entered."),
                Column("won", "Won", Kind.COUNT, "Of the deals that entered, those won now."),
                Column("to_won", "To won (%)", Kind.PERCENT, "Won as a percentage of entered."),
            ],
            rows=[asdict(row) for row in funnel(scope=scope)],
            chart=Chart(
                labels="stage",
                series=["entered", "went_on", "won"],
                description="Deals entering each stage, going on, and won",
            ),
        )
    ]
