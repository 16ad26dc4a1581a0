"""Create (or update) the bi schema's views and its read-only login role; print a connection string."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from apps.reports.export.sql import bi_setup


class Command(BaseCommand):
    help = (
        "On PostgreSQL: create the schema bi with one view per export table and a login role that can read "
        "those views and nothing else (no table in public, no write). Safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--role", default="bi_reader", help="the login role (default bi_reader)")
        parser.add_argument(
            "--password-file",
            type=Path,
            help="a file holding the role's password (default: a new role gets a random one, printed once; "
            "an existing role keeps its own)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("The bi schema needs PostgreSQL (DATABASE_URL=postgres://…).")
        password = None
        if options["password_file"] is not None:
            path = Path(options["password_file"])
            try:
                password = path.read_text().strip()
            except OSError as exc:
                raise CommandError(f"Cannot read {path}: {exc}") from exc
            if not password:
                raise CommandError(f"{path} is empty")
        result = bi_setup(role=options["role"], password=password)
        verb = "created" if result.created else "updated"
        self.stderr.write(f"Schema bi: views {', '.join(result.views)}; role {result.role!r} {verb}.")
        if result.password is None:
            self.stderr.write("The role's password was left as it was (give --password-file to set one).")
        self.stdout.write(result.connection_string())
