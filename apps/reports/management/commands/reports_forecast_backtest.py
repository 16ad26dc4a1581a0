"""Write the forecast snapshots the portal would have taken in each past week, from the stage history as it
was known then (run after the stage history was backfilled: ``kommo_sync --history``), so the forecast's
accuracy shows from the first day. The same history always gives the same snapshots."""

from __future__ import annotations

from apps.kommo.models import KommoAccount
from apps.reports.forecast_snapshots import forecast_backtest, forecast_snapshot_take
from apps.reports.management.weekly import WeeklyCommand


class Command(WeeklyCommand):
    help = __doc__
    replace_help = "Rebuild backtested weeks (live snapshots stay)."

    def handle_account(self, account: KommoAccount, *, weeks: int, replace: bool, this_week: bool) -> None:
        written = forecast_backtest(account=account, weeks=weeks, replace=replace)
        weeks_written = len({week for week, _, _ in written})
        deals = sum(count for _, _, count in written)
        self.stdout.write(
            f"{account}: {len(written)} snapshots in {weeks_written} weeks backtested, {deals} deal rows"
        )
        if this_week:
            self.stdout.write(f"{account}: this week, {forecast_snapshot_take(account=account)} snapshots")
