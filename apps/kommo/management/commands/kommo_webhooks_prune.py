"""Delete old processed and ignored webhook events; failed, dead and rejected ones are kept."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.kommo.webhooks.processing import webhook_events_prune


class Command(BaseCommand):
    help = "Delete processed and ignored webhook events received more than --days days ago."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=30, help="keep this many days (default 30)")

    def handle(self, *args: Any, **options: Any) -> None:
        deleted = webhook_events_prune(days=options["days"])
        self.stdout.write(f"deleted {deleted} webhook events older than {options['days']} days")
