"""The forecast on the demo seed: after the first sync and its year of history, the backtest fills the
accuracy table (every method at weeks 1, 4 and 8 of the past quarters)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.kommo.services.sync import history_backfill, mirror_sync
from apps.reports.forecast_snapshots import forecast_backtest
from apps.reports.framework import scope_for
from apps.reports.models import ForecastSnapshot
from apps.reports.selectors.forecast import LEAD_WEEKS, METHODS, forecast_accuracy, forecast_history
from tests.kommo.sandbox_support import account_for, sandbox_start
from tests.reports.support import person

pytestmark = [pytest.mark.django_db, pytest.mark.sandbox]


def test_the_backtest_of_the_demo_s_year_fills_the_accuracy_table() -> None:
    server = sandbox_start("demo")
    try:
        account = account_for(server)
        mirror_sync(account=account)
        history_backfill(account=account, days=365)
    finally:
        server.stop()

    written = forecast_backtest(account=account, weeks=52)

    assert len({week for week, _, _ in written}) == 52
    assert ForecastSnapshot.objects.filter(account=account, backtested=True).count() == len(written)
    scope, _ = scope_for(person("head", "Head of sales"), {"period": "this_quarter"}, now=timezone.now())
    history = forecast_history(scope=scope)
    rows = forecast_accuracy(history=history)
    assert len(history) >= 3 and all(quarter.actual > 0 for quarter in history)
    assert {(row.method, row.week) for row in rows} == {(m, w) for m in METHODS for w in LEAD_WEEKS}
    for row in rows:
        assert row.periods >= 3 and row.zero_periods == 0
        assert row.error is not None and row.accuracy is not None and row.wape is not None
    weighted = {row.week: row for row in rows if row.method == "weighted"}
    # A forecast from the account's own history is in the right range: off by less than the whole.
    assert weighted[1].wape < 1.0, weighted
