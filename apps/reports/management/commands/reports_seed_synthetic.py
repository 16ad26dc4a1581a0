"""Fill a new synthetic account with many deals and their history, for the reports benchmark."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.reports.synthetic import synthetic_account_seed


class Command(BaseCommand):
    help = (
        "Create a new account with DEALS deals walking two pipelines over YEARS years, about STAGE_CHANGES "
        "moves (with their stays and gate decisions) and about STAKEHOLDERS stakeholders, in the local "
        "tables only (Kommo is never called). Written with COPY on PostgreSQL."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--deals", type=int, default=10_000)
        parser.add_argument("--stage-changes", type=int, default=None, help="default: 10 per deal")
        parser.add_argument("--stakeholders", type=int, default=None, help="default: 4 per deal")
        parser.add_argument("--seed", type=int, default=1, help="random seed (the same seed, the same data)")
        parser.add_argument(
            "--years", type=float, default=2.0, help="the deals are created over this many years (default 2)"
        )
        parser.add_argument("--name", default="", help="the account's name")

    def handle(self, *args: Any, **options: Any) -> None:
        deals = options["deals"]
        if deals < 1:
            raise CommandError("--deals must be at least 1")
        if options["years"] <= 0:
            raise CommandError("--years must be more than 0")
        changes = options["stage_changes"] if options["stage_changes"] is not None else 10 * deals
        people = options["stakeholders"] if options["stakeholders"] is not None else 4 * deals
        result = synthetic_account_seed(
            deals=deals,
            stage_changes=changes,
            stakeholders=people,
            seed=options["seed"],
            name=options["name"] or None,
            years=options["years"],
        )
        rows = ", ".join(f"{table} {count}" for table, count in sorted(result.counts.items()))
        self.stdout.write(
            f"Account {result.account.name!r} (pk {result.account.pk}) in {result.seconds:.1f} s: {rows}"
        )
