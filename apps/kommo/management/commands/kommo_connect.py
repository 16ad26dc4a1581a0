"""Connect the portal to a Kommo account with a long-lived token (or the sandbox's demo token)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.kommo.exceptions import KommoError
from apps.kommo.services.accounts import account_connect_with_token


class Command(BaseCommand):
    help = (
        "Check a long-lived token with GET /api/v4/account, create or update the account it belongs to "
        "(one per base URL and Kommo account id), and print the account's webhook URL."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base-url", required=True, help="e.g. https://example.kommo.com")
        parser.add_argument("--token", required=True, help="a long-lived token")
        parser.add_argument("--subdomain", default="", help="default: the one Kommo reports")
        parser.add_argument("--name", default="", help="default: the account name Kommo reports")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            account, created = account_connect_with_token(
                base_url=options["base_url"],
                token=options["token"],
                subdomain=options["subdomain"],
                name=options["name"],
            )
        except KommoError as exc:
            raise CommandError(f"Kommo refused the connection: {exc}") from exc
        verb = "Connected" if created else "Updated"
        self.stdout.write(f"{verb} account {account.name!r} (Kommo id {account.kommo_id}, pk {account.pk}).")
        self.stdout.write(f"Webhook URL: {account.webhook_url}")
