"""What the commands that fill past weeks share (``reports_coverage_backfill``,
``reports_forecast_backtest``): the options ``--account``, ``--weeks``, ``--replace`` and ``--this-week``, and
the accounts they name."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet

from apps.kommo.models import KommoAccount


class WeeklyCommand(BaseCommand):
    replace_help = "Rebuild weeks filled before (live snapshots stay)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", type=int, help="The account's local id (default: every account).")
        parser.add_argument("--weeks", type=int, default=52, help="How many weeks back (52).")
        parser.add_argument("--replace", action="store_true", help=self.replace_help)
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
        accounts: QuerySet[KommoAccount] = KommoAccount.objects.order_by("pk")
        if account is not None:
            accounts = accounts.filter(pk=account)
            if not accounts.exists():
                raise CommandError(f"no account with id {account}")
        for row in accounts:
            self.handle_account(row, weeks=weeks, replace=replace, this_week=this_week)

    def handle_account(self, account: KommoAccount, *, weeks: int, replace: bool, this_week: bool) -> None:
        raise NotImplementedError
