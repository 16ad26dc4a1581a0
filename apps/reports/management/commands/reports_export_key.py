"""Create an export client and print its key (shown once)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.reports.export.keys import export_client_create
from apps.reports.models import ExportClient


class Command(BaseCommand):
    help = (
        "Create an export client named NAME and print its key for Authorization: Bearer <key> (shown once)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="who uses the key, e.g. Metabase")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"].strip()
        if not name:
            raise CommandError("--name must not be empty")
        if ExportClient.objects.filter(name=name).exists():
            raise CommandError(f"An export client named {name!r} exists; make a new key for it in the admin.")
        client, key = export_client_create(name=name)
        self.stderr.write(
            f"Export client {client.name!r} created; its key (copy it now, it is not shown again):"
        )
        self.stdout.write(key)
