"""Fill the weekly decision-maker coverage snapshots of the weeks before the first one, from the stage stays
(run after the stage history was backfilled: ``kommo_sync --history``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.kommo.models import KommoAccount
from apps.reports.coverage_snapshots import coverage_snapshot_take, coverage_snapshots_backfill


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", type=int, help="The account's local id (default: every account).")
        parser.add_argument("--weeks", type=int, default=52, help="How many completed weeks back (52).")
        parser.add_argument(
            "--replace", action="store_true", help="Rebuild weeks backfilled before (live snapshots stay)."
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
            written = coverage_snapshots_backfill(account=row, weeks=weeks, replace=replace)
            rows = sum(count for _, count in written)
            self.stdout.write(f"{row}: {len(written)} weeks backfilled, {rows} rows")
            if this_week:
                self.stdout.write(f"{row}: this week's snapshot, {coverage_snapshot_take(account=row)} rows")
