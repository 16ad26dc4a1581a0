from __future__ import annotations

from dataclasses import asdict

from django.conf import settings

from apps.reports.framework import Chart, Column, Kind, Scope, Table, report_register
from apps.reports.selectors.legal import legal_reviews, legal_reviews_stale


@report_register(
    slug="legal-review",
    title="Legal review",
    summary="How long legal review takes, the open reviews that are getting old, and the gate blocks on "
    "the way out.",
    order=40,
)
def legal_review(scope: Scope) -> list[Table]:
    stale_days = settings.REPORTS_LEGAL_REVIEW_STALE_DAYS
    return [
        Table(
            key="reviews",
            title="Reviews",
            columns=[
                Column("stage", "Legal stage"),
                Column(
                    "passed",
                    "Passed",
                    Kind.COUNT,
                    "Stays in the legal stage that ended in the period by leaving it forward (to a later "
                    "stage or won).",
                ),
                Column(
                    "median", "Median (days)", Kind.DAYS, "Median time from entering the stage to that exit."
                ),
                Column(
                    "p75",
                    "75th percentile (days)",
                    Kind.DAYS,
                    "Three quarters of those reviews were shorter.",
                ),
                Column(
                    "left_otherwise", "Left otherwise", Kind.COUNT, "Stays that ended back or lost instead."
                ),
                Column(
                    "open", "Open", Kind.COUNT, "Deals in the legal stage at the end of the period (now)."
                ),
                Column("stale", f"Open > {stale_days} days", Kind.COUNT, "Of those, the ones there longer."),
                Column(
                    "blocks",
                    "Gate blocks",
                    Kind.COUNT,
                    "Moves out of the legal stage the gates blocked in the period (each block once).",
                ),
                Column("deals_blocked", "Deals blocked", Kind.COUNT, "Different deals among those blocks."),
            ],
            rows=[asdict(row) for row in legal_reviews(scope=scope)],
            chart=Chart(
                labels="stage",
                series=["median", "p75"],
                description="Median and 75th percentile of days from entering legal review to passing it",
            ),
            notes=[
                "The legal stage is the one a gate rule on the lawyer guards (else a stage named 'legal'). "
                "Time to the lawyer's approval is not shown: the portal keeps the current approval of each "
                "stakeholder, not the day it was given.",
            ],
            empty="No legal stage found: add a gate rule on the lawyer's approval, or name a stage Legal.",
        ),
        Table(
            key="stale",
            title=f"Open reviews older than {stale_days} days",
            columns=[
                Column("deal", "Deal"),
                Column("manager", "Manager"),
                Column("value", "Value", Kind.MONEY, "The deal's current budget."),
                Column("days", "Days in review", Kind.DAYS, "Since the deal last entered the legal stage."),
                Column(
                    "lawyer",
                    "Lawyer",
                    Kind.TEXT,
                    "The lawyer's approval now, as the deal's stakeholders say.",
                ),
                Column(
                    "blocks",
                    "Gate blocks",
                    Kind.COUNT,
                    "Blocked moves of the deal since it entered the stage.",
                ),
            ],
            rows=[asdict(row) for row in legal_reviews_stale(scope=scope)],
            chart=Chart(
                labels="deal",
                series=["days"],
                description=f"Days in legal review of the open reviews older than {stale_days} days",
                horizontal=True,
            ),
            empty=f"No open review is older than {stale_days} days.",
        ),
    ]
