"""Derive every deal's stage stays again from its recorded moves."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.kommo.services.stays import stays_rebuild


class Command(BaseCommand):
    help = (
        "Derive the stage stays of every deal (of one account, or all) again from its stage changes. "
        "The stays are kept current as moves are recorded; this repairs them after a bulk load of moves or "
        "a reordering of stages. Safe to run at any time, and again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", type=int, help="only this account (its local id)")

    def handle(self, *args: Any, **options: Any) -> None:
        seen, written = stays_rebuild(account_id=options["account"])
        self.stdout.write(f"{seen} deals, {written} stay rows written")
