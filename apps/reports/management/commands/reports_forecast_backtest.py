"""Write the forecast snapshots the portal would have taken in each past week, from the stage history as it
was known then (run after the stage history was backfilled: ``kommo_sync --history``), so the forecast's
accuracy shows from the first day. The same history always gives the same snapshots."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.kommo.models import KommoAccount
from apps.reports.forecast_snapshots import forecast_backtest, forecast_snapshot_take


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", type=int, help="The account's local id (default: every account).")
        parser.add_argument("--weeks", type=int, default=52, help="How many weeks back (52).")
        parser.add_argument(
            "--replace", action="store_true", help="Rebuild backtested weeks (live snapshots stay)."
        )
        parser.add_argument(
            "--this-week",
            action="store_true",
            help="Also take this week's snapshot now (beat's job otherwise).",
        )

    def handle(
        self, *args: Any, account: int | None, weeks: int, replace: bool, this_week: bool, **options: Any
    ) -> None:
        if weeks < 1:
            raise CommandError("--weeks must be at least 1")
        accounts = KommoAccount.objects.order_by("pk")
        if account is not None:
            accounts = accounts.filter(pk=account)
            if not accounts.exists():
                raise CommandError(f"no account with id {account}")
        for row in accounts:
            written = forecast_backtest(account=row, weeks=weeks, replace=replace)
            weeks_written = len({week for week, _, _ in written})
            deals = sum(count for _, _, count in written)
            self.stdout.write(
                f"{row}: {len(written)} snapshots in {weeks_written} weeks backtested, {deals} deal rows"
            )
            if this_week:
                self.stdout.write(f"{row}: this week, {forecast_snapshot_take(account=row)} snapshots")
