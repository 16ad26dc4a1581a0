"""Post a recorded webhook delivery to a running portal, with Kommo's headers (``make replay FILE=…``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.kommo.management.accounts import account_from_option
from apps.kommo.webhooks.recordings import recording_load


class Command(BaseCommand):
    help = (
        "Post a recorded webhook body (.form.txt raw body, .curl.txt capture, or a .json documentation "
        "rendering) to a running portal. The target is --url, or the webhook URL of --account (a local "
        "account id; default: the only account)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        target = parser.add_mutually_exclusive_group()
        target.add_argument("--url", help="the full webhook URL, token included")
        target.add_argument("--account", type=int, help="local id of the account whose webhook URL to use")
        parser.add_argument("--timeout", type=float, default=10.0)

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
        account = None if options["url"] else account_from_option(options["account"])
        url = options["url"] or account.webhook_url  # type: ignore[union-attr]
        block = None
        if account is not None and account.kommo_id is not None:
            block = {"subdomain": account.subdomain, "id": str(account.kommo_id), "self": account.api_root}
        recorded = recording_load(path, account=block)
        try:
            response = requests.post(
                url, data=recorded.body, headers=recorded.headers, timeout=options["timeout"]
            )
        except requests.RequestException as exc:
            raise CommandError(f"POST {url} failed: {exc}") from exc
        self.stdout.write(f"POST {url} ({len(recorded.body)} bytes) -> {response.status_code}")
        if response.status_code >= 300:
            raise CommandError(f"the portal answered {response.status_code}: {response.text[:200]}")
