from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from apps.reports.framework import Chart, Column, Kind, Scope, Table, report_register
from apps.reports.models import ForecastCategory
from apps.reports.selectors.forecast import (
    LEAD_WEEKS,
    METHOD_LABELS,
    METHODS,
    AccuracyRow,
    forecast_accuracy,
    forecast_history,
    forecast_movers,
    forecast_now,
)

CHART_WEEK = 4  # the lead time the past quarters' chart compares
CATEGORY_LABELS = dict(ForecastCategory.Category.choices)

WEIGHTED = Column(
    "weighted",
    "Stage-weighted",
    Kind.MONEY,
    "Σ value x p of the open deals expected to close in the quarter; p = won ÷ (won + lost) of the deals "
    "that entered the stage 6 to 18 months before, with a prior from the stage's place below 20 closed "
    "deals.",
)
COMMITTEE = Column(
    "committee",
    "Committee-adjusted",
    Kind.MONEY,
    "The same with p' = p x (win rate of the stage's closed deals in the deal's coverage state ÷ the stage's "
    "win rate), shown beside the stage-weighted figure, never instead of it.",
)
COMMIT = Column("commit", "Commit", Kind.MONEY, "Value of the deals in commit stages.")
BEST = Column("best_case", "Best case", Kind.MONEY, "Commit plus the deals in best-case stages.")
PIPELINE = Column("pipeline", "Pipeline", Kind.MONEY, "Best case plus the deals in pipeline stages.")


def _percent(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _yes_no(value: bool | None) -> str:
    return "not known" if value is None else "yes" if value else "no"


def _committee_verdict(rows: list[AccuracyRow]) -> str:
    """Whether the backtest says the committee adjustment helps: its WAPE against the stage-weighted one,
    week by week."""
    wape = {(row.method, row.week): row.wape for row in rows}
    helps: list[str] = []
    hurts: list[str] = []
    for week in LEAD_WEEKS:
        plain, adjusted = wape.get(("weighted", week)), wape.get(("committee", week))
        if plain is None or adjusted is None:
            continue
        (helps if adjusted < plain else hurts).append(str(week))
    if not helps and not hurts:
        return "The committee adjustment earns its place where its WAPE is below the stage-weighted one."
    if not hurts:
        return "The committee adjustment helps: its WAPE is below the stage-weighted one at every week."
    if not helps:
        return "The committee adjustment does not help yet: its WAPE is not below the stage-weighted one."
    return (
        f"The committee adjustment helps at week {', '.join(helps)} (WAPE below the stage-weighted one), "
        f"not at week {', '.join(hurts)}."
    )


@report_register(
    slug="forecast",
    title="Forecast",
    summary="What will close this quarter and the next by method, and how wrong past forecasts were.",
    order=45,
)
def forecast(scope: Scope) -> list[Table]:
    periods, taken = forecast_now(scope=scope)
    movers = forecast_movers(scope=scope)
    history = forecast_history(scope=scope)
    accuracy = forecast_accuracy(history=history)
    taken_note = (
        f"From the latest weekly snapshot (taken {timezone.localtime(taken):%d %b %Y %H:%M}); the period "
        "filter does not apply."
        if taken
        else ""
    )
    past_rows = []
    for quarter in history:
        weighted = quarter.accuracy("weighted", CHART_WEEK)
        committee = quarter.accuracy("committee", CHART_WEEK)
        past_rows.append(
            {
                "period": quarter.label + (" (backtested)" if quarter.backtested else ""),
                "actual": quarter.actual,
                "weighted": quarter.forecasts.get(("weighted", CHART_WEEK)),
                "committee": quarter.forecasts.get(("committee", CHART_WEEK)),
                "commit": quarter.forecasts.get(("commit", CHART_WEEK)),
                "best_case": quarter.forecasts.get(("best_case", CHART_WEEK)),
                "error_weighted": _percent(weighted.error) if weighted else None,
                "error_committee": _percent(committee.error) if committee else None,
                "note": "nothing won: error not defined" if quarter.actual == 0 else "",
            }
        )
    return [
        Table(
            key="periods",
            title="This quarter and the next",
            columns=[
                Column("period", "Quarter"),
                Column("deals", "Open deals", Kind.COUNT, "Open deals expected to close in the quarter."),
                WEIGHTED,
                COMMITTEE,
                COMMIT,
                BEST,
                PIPELINE,
            ],
            rows=[
                {
                    "period": period.label,
                    "deals": period.deals,
                    "weighted": period.weighted,
                    "committee": period.committee,
                    "commit": period.commit,
                    "best_case": period.best_case,
                    "pipeline": period.pipeline,
                }
                for period in periods
            ],
            chart=Chart(
                labels="period",
                series=["weighted", "committee", "commit", "best_case", "pipeline"],
                description="Forecast of this quarter and the next by method and category",
            ),
            notes=[
                note
                for note in (
                    taken_note,
                    "Expected close: the deal's close-date field when the account maps one (the field "
                    "mappings' expected close date, a deal field), else when it entered its stage plus the "
                    "stage's median days to won (a deal older than that is expected now).",
                    "Categories roll up: best case includes commit, pipeline includes best case; omitted "
                    "stages count in none. Sales ops set each stage's category in the admin.",
                )
                if note
            ],
            empty="No forecast snapshot yet: beat takes the first within six hours, and "
            "reports_forecast_backtest writes the past weeks'.",
        ),
        Table(
            key="movers",
            title="Deals that move this quarter's forecast most",
            columns=[
                Column("deal", "Deal"),
                Column("stage", "Stage"),
                Column("value", "Value", Kind.MONEY, "The deal's budget (Kommo's price)."),
                Column("p", "p", Kind.PERCENT, "The stage's probability of won."),
                Column("p_committee", "p'", Kind.PERCENT, "Adjusted by the deal's coverage state."),
                Column("weighted", "Weighted", Kind.MONEY, "Value x p: what the deal adds to the forecast."),
                Column(
                    "expected_close", "Expected close", Kind.TEXT, "From the field, or the stage's median."
                ),
                Column("category", "Category"),
                Column("dm", "Decision maker", Kind.TEXT, "A decision maker identified on the deal."),
                Column(
                    "approvals",
                    "Approvals ahead",
                    Kind.TEXT,
                    "Every approval the gate rules at or after the deal's stage require has been given.",
                ),
            ],
            rows=[
                {
                    "deal": (row.lead.name if row.lead else "") or f"deal {row.lead_kommo_id}",
                    "href": reverse("stakeholders:deal_detail", args=[row.lead_id]) if row.lead_id else None,
                    "stage": row.stage,
                    "value": row.value,
                    "p": 100 * row.p,
                    "p_committee": 100 * row.p_committee,
                    "weighted": row.value * row.p,
                    "expected_close": f"{row.expected_close:%Y-%m-%d}",
                    "category": CATEGORY_LABELS.get(row.category, row.category),
                    "dm": _yes_no(row.dm_identified),
                    "approvals": _yes_no(row.approvals_present),
                }
                for row in movers
            ],
            chart=Chart(
                labels="deal",
                series=["weighted"],
                description="What each deal adds to the forecast",
                horizontal=True,
            ),
            notes=["The 20 deals expected this quarter with the largest value x p in the latest snapshots."],
            empty="No open deal is expected to close this quarter.",
        ),
        Table(
            key="past",
            title=f"Forecast against won, past quarters (forecast at week {CHART_WEEK})",
            columns=[
                Column("period", "Quarter"),
                Column("actual", "Won (A)", Kind.MONEY, "Value of the deals won in the quarter."),
                Column(
                    "weighted",
                    "Stage-weighted (F)",
                    Kind.MONEY,
                    "The forecast for the quarter at its week 4.",
                ),
                Column("committee", "Committee-adjusted", Kind.MONEY, "The same, adjusted."),
                Column("commit", "Commit", Kind.MONEY, "Commit at week 4."),
                Column("best_case", "Best case", Kind.MONEY, "Best case at week 4."),
                Column("error_weighted", "Error, weighted (%)", Kind.PERCENT, "|A - F| ÷ A."),
                Column("error_committee", "Error, committee (%)", Kind.PERCENT, "|A - F| ÷ A."),
                Column("note", "Note"),
            ],
            rows=past_rows,
            chart=Chart(
                labels="period",
                series=["actual", "weighted", "committee"],
                description="Forecast at week 4 against the value won, per past quarter",
            ),
            notes=[
                "Quarters that have ended and end in the twelve months up to the end of the chosen period.",
                "Week k of a quarter: days 7(k-1) to 7k after its first day; the first snapshot of each "
                "pipeline taken then. Backtested: rebuilt from the history by reports_forecast_backtest.",
                "A quarter with nothing won (A = 0) has no error: there is no won value to divide by.",
            ],
            empty="No quarter has ended in this period with a snapshot: run reports_forecast_backtest.",
        ),
        Table(
            key="accuracy",
            title="Accuracy by method and lead time",
            columns=[
                Column("method", "Method"),
                Column(
                    "week", "Week of the quarter", Kind.COUNT, "When in the quarter the forecast was taken."
                ),
                Column("periods", "Quarters", Kind.COUNT, "Closed quarters with a forecast at that week."),
                Column("zero", "With A = 0", Kind.COUNT, "Of them, quarters with nothing won: no error."),
                Column(
                    "error", "Error (%)", Kind.PERCENT, "Mean of |A - F| ÷ A over the quarters with A > 0."
                ),
                Column("accuracy", "Accuracy (%)", Kind.PERCENT, "Mean of max(0, 1 - error)."),
                Column(
                    "bias", "Bias (%)", Kind.PERCENT, "Mean of (F - A) ÷ A: above 0, the forecast ran high."
                ),
                Column("wape", "WAPE (%)", Kind.PERCENT, "Σ|A - F| ÷ ΣA over all the quarters."),
            ],
            rows=[
                {
                    "method": METHOD_LABELS[row.method],
                    "week": row.week,
                    "periods": row.periods,
                    "zero": row.zero_periods,
                    "error": _percent(row.error),
                    "accuracy": _percent(row.accuracy),
                    "bias": _percent(row.bias),
                    "wape": _percent(row.wape),
                }
                for row in accuracy
            ],
            chart=None,
            notes=[
                f"Methods: {', '.join(METHOD_LABELS[m] for m in METHODS)}; lead times: weeks "
                f"{', '.join(str(w) for w in LEAD_WEEKS)} of the quarter.",
                _committee_verdict(accuracy),
                f"Cohort window: deals that entered a stage {settings.REPORTS_FORECAST_COHORT_MIN_MONTHS} to "
                f"{settings.REPORTS_FORECAST_COHORT_MAX_MONTHS} months before the snapshot.",
            ],
            empty="No closed quarter with a forecast yet.",
        ),
    ]
