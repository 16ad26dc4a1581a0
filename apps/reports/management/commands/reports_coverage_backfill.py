"""Fill the weekly decision-maker coverage snapshots of the weeks before the first one, from the stage stays
(run after the stage history was backfilled: ``kommo_sync --history``)."""

from __future__ import annotations

from apps.kommo.models import KommoAccount
from apps.reports.coverage_snapshots import coverage_snapshot_take, coverage_snapshots_backfill
from apps.reports.management.weekly import WeeklyCommand


class Command(WeeklyCommand):
    help = __doc__
    replace_help = "Rebuild weeks backfilled before (live snapshots stay)."

    def handle_account(self, account: KommoAccount, *, weeks: int, replace: bool, this_week: bool) -> None:
        written = coverage_snapshots_backfill(account=account, weeks=weeks, replace=replace)
        rows = sum(count for _, count in written)
        self.stdout.write(f"{account}: {len(written)} weeks backfilled, {rows} rows")
        if this_week:
            self.stdout.write(
                f"{account}: this week's snapshot, {coverage_snapshot_take(account=account)} rows"
            )
