from __future__ import annotations

from typing import Any

from apps.reports.framework import Chart, Column, Kind, Scope, Table, report_register
from apps.reports.selectors.gates import GroupBlocks, gates_report
from apps.reports.selectors.scoped import scope_account

BLOCKED = Column(
    "blocked",
    "Blocked",
    Kind.COUNT,
    "Decisions 'blocked' in the period: the deal was moved back (rules enforced).",
)
WOULD = Column(
    "would_block",
    "Would block (dry run)",
    Kind.COUNT,
    "Decisions 'would block' of rules in dry run, in the period.",
)
DEALS = Column("deals", "Deals", Kind.COUNT, "Deals blocked at least once, each counted once.")


def _group_rows(first: str, groups: list[GroupBlocks]) -> list[dict[str, Any]]:
    return [
        {first: group.label, "blocked": group.blocked, "would_block": group.would_block, "deals": group.deals}
        for group in groups
    ]


@report_register(
    slug="gates",
    title="Gates",
    summary="How often each gate stopped deals, what was missing, and how long a blocked deal took to pass.",
    order=70,
)
def gates(scope: Scope) -> list[Table]:
    report = gates_report(
        account=scope_account(scope),
        since=scope.start,
        until=scope.until,
        deals=scope.deals("lead__", join=False),
    )
    names = report.rule_names
    series = {name: f"rule_{index}" for index, name in enumerate(names)}
    weeks = [
        {"week": f"{week:%Y-%m-%d}", **{series[name]: counts.get(name, 0) for name in names}}
        for week, counts in report.weeks
    ]
    return [
        Table(
            key="rules",
            title="Blocks per rule",
            columns=[
                Column("rule", "Rule"),
                Column("stage", "Gated stage"),
                BLOCKED,
                WOULD,
                DEALS,
                Column(
                    "passed",
                    "Passed later",
                    Kind.COUNT,
                    "Blocks followed by the deal's pass of the same rule.",
                ),
                Column(
                    "still_blocked", "Not passed yet", Kind.COUNT, "Blocks with no pass of the rule since."
                ),
                Column(
                    "median_days_to_pass",
                    "Median days to pass",
                    Kind.DAYS,
                    "From a deal's first block since its last pass of the rule to its next pass.",
                ),
                Column("p75_days_to_pass", "75th percentile", Kind.DAYS, "The same, 75th percentile."),
            ],
            rows=[
                {
                    "rule": row.rule,
                    "stage": row.stage,
                    "blocked": row.blocked,
                    "would_block": row.would_block,
                    "deals": row.deals,
                    "passed": row.passed,
                    "still_blocked": row.still_blocked,
                    "median_days_to_pass": row.median_days_to_pass,
                    "p75_days_to_pass": row.p75_days_to_pass,
                }
                for row in report.rules
            ],
            chart=Chart(
                labels="rule",
                series=["blocked", "would_block"],
                description="Blocks per rule",
                horizontal=True,
                stacked=True,
            ),
            empty="No gate blocked a deal in this period.",
        ),
        Table(
            key="weeks",
            title="Blocks per week",
            columns=[
                Column("week", "Week of"),
                *(
                    Column(series[name], name, Kind.COUNT, "Blocked and would-block decisions that week.")
                    for name in names
                ),
            ],
            rows=weeks,
            chart=Chart(
                labels="week",
                series=list(series.values()),
                description="Blocks per week and rule",
                stacked=True,
            ),
            notes=["Weeks start on Monday."],
            empty="No gate blocked a deal in this period.",
        ),
        Table(
            key="missing",
            title="Conditions most often missing",
            columns=[
                Column("condition", "Missing"),
                Column(
                    "times",
                    "Times",
                    Kind.COUNT,
                    "Reasons recorded by the blocking decisions, without the people they name.",
                ),
                Column("deals", "Deals", Kind.COUNT, "Deals it blocked, each counted once."),
            ],
            rows=[
                {"condition": row.condition, "times": row.times, "deals": row.deals} for row in report.missing
            ],
            chart=Chart(
                labels="condition",
                series=["times"],
                description="Conditions most often missing",
                horizontal=True,
            ),
            empty="No gate blocked a deal in this period.",
        ),
        Table(
            key="stages",
            title="Blocks per gated stage",
            columns=[Column("stage", "Gated stage"), BLOCKED, WOULD, DEALS],
            rows=_group_rows("stage", report.stages),
            chart=Chart(
                labels="stage",
                series=["blocked", "would_block"],
                description="Blocks per gated stage",
                stacked=True,
            ),
            empty="No gate blocked a deal in this period.",
        ),
        Table(
            key="managers",
            title="Blocks per manager",
            columns=[Column("manager", "Manager"), BLOCKED, WOULD, DEALS],
            rows=_group_rows("manager", report.managers),
            chart=Chart(
                labels="manager",
                series=["blocked", "would_block"],
                description="Blocks per manager",
                horizontal=True,
                stacked=True,
            ),
            notes=["A deal counts under its current responsible manager."],
            empty="No gate blocked a deal in this period.",
        ),
    ]
