"""The forecast's formulas as pure functions: a stage's p with its prior, the buying-committee factor, the
expected close, quarters, and the accuracy of a forecast against what was won. Nothing here reads the
database; :mod:`apps.reports.forecast_snapshots` feeds it the history. docs/reports.md ("Forecast") states
the same rules in prose."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# -- stage probability ----------------------------------------------------------------------------------


def stage_prior(*, rank: int, stages: int) -> float:
    """The prior p of the ``rank``-th of ``stages`` open stages in sort order (1 = the first): evenly spaced
    between 0 and 1, ``rank ÷ (stages + 1)`` — a deal further down the pipeline is likelier to be won."""
    if stages < 1 or not 1 <= rank <= stages:
        raise ValueError(f"rank {rank} of {stages} stages")
    return rank / (stages + 1)


def stage_p(*, won: int, lost: int, prior: float, min_closed: int) -> float:
    """p = won ÷ (won + lost) of the stage's closed cohort. Below ``min_closed`` closed deals the prior fills
    the missing ones: (won + (min_closed - closed) x prior) ÷ min_closed, so p moves from the prior (no closed
    deal) to the measured rate (``min_closed`` of them) without a jump."""
    closed = won + lost
    if closed >= min_closed:
        return won / closed
    return (won + (min_closed - closed) * prior) / min_closed


# The fewest closed deals in a coverage state for its own win rate to count: below it the factor is 1.
MIN_STATE_CLOSED = 5


def committee_factor(*, won_in_state: int, closed_in_state: int, won_all: int, closed_all: int) -> float:
    """How much likelier than the stage's average a deal in this coverage state is won: the win rate of the
    stage's closed cohort deals in the state ÷ the win rate of all of them. 1 (no adjustment) when the state
    has fewer than ``MIN_STATE_CLOSED`` closed deals or the stage won none."""
    if closed_in_state < MIN_STATE_CLOSED or closed_all == 0 or won_all == 0:
        return 1.0
    return (won_in_state / closed_in_state) / (won_all / closed_all)


def p_adjusted(*, p: float, factor: float) -> float:
    """p' = p x factor, never above 1."""
    return min(1.0, p * factor)


def median(values: Sequence[float]) -> float | None:
    """The median (the mean of the two middle values for an even count); None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def expected_close(*, entered: dt.datetime, remaining_days: float, at: dt.datetime) -> dt.datetime:
    """A deal's expected close without a close-date field: when it entered its stage plus the stage's median
    time to won; a deal already older than that is expected now."""
    return max(entered + dt.timedelta(days=remaining_days), at)


# -- periods --------------------------------------------------------------------------------------------


def quarter_start(day: dt.date) -> dt.date:
    return dt.date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def quarter_after(start: dt.date) -> dt.date:
    index = start.year * 12 + start.month - 1 + 3
    return dt.date(index // 12, index % 12 + 1, 1)


def quarter_label(start: dt.date) -> str:
    return f"Q{(start.month - 1) // 3 + 1} {start.year}"


def months_before(moment: dt.datetime, months: int) -> dt.datetime:
    """The same day and time ``months`` calendar months earlier (the last day of a shorter month)."""
    index = moment.year * 12 + moment.month - 1 - months
    year, month = index // 12, index % 12 + 1
    following = dt.date(year + (month == 12), month % 12 + 1, 1)
    last_day = (following - dt.timedelta(days=1)).day
    return moment.replace(year=year, month=month, day=min(moment.day, last_day))


# -- accuracy -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accuracy:
    """One forecast F against the value won A. With A = 0 the error, accuracy and bias are not defined
    (None): nothing was won, so no share of it can be missed."""

    actual: float
    forecast: float
    error: float | None  # |A - F| ÷ A
    accuracy: float | None  # max(0, 1 - error)
    bias: float | None  # (F - A) ÷ A

    @property
    def actual_is_zero(self) -> bool:
        return self.actual == 0


def accuracy_of(*, actual: float, forecast: float) -> Accuracy:
    if actual == 0:
        return Accuracy(actual, forecast, None, None, None)
    error = abs(actual - forecast) / actual
    return Accuracy(actual, forecast, error, max(0.0, 1.0 - error), (forecast - actual) / actual)


def wape(pairs: Iterable[tuple[float, float]]) -> float | None:
    """Weighted absolute percentage error over periods: Σ|A - F| ÷ ΣA over the (A, F) pairs. A period with
    A = 0 adds its |F| to the errors and nothing to the won value; None when nothing was won at all."""
    errors = total = 0.0
    for actual, forecast in pairs:
        errors += abs(actual - forecast)
        total += actual
    return None if total == 0 else errors / total


def mean(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None
