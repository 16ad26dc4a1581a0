"""``manage.py kommo_sandbox``: the same as ``python -m kommo_sandbox`` (:mod:`kommo_sandbox.cli`), where the
settings install the sandbox (local and test, not production)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from kommo_sandbox import cli


class Command(BaseCommand):
    help = "Run the Kommo sandbox (a Kommo API v4 emulator) on its own port."

    def add_arguments(self, parser: CommandParser) -> None:
        cli.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            cli.serve(options, self.stdout)
        except cli.UsageError as error:
            raise CommandError(str(error)) from None
