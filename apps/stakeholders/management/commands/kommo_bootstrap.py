from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.kommo.exceptions import KommoError
from apps.kommo.management.accounts import account_from_option
from apps.kommo.provenance import MirrorSource, Provenance
from apps.stakeholders.bootstrap import account_bootstrap
from apps.stakeholders.services import stakeholders_derive_for_account


class Command(BaseCommand):
    help = (
        "Create in Kommo, unless they exist, the contact field “Role in the purchase”, the “Stakeholders” "
        "catalog with its fields and the portal's webhook subscription; then map them to the portal's roles."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", type=int, help="KommoAccount id (needed when there are several).")
        parser.add_argument(
            "--public-url",
            default=settings.KOMMO_PUBLIC_URL,
            help="This portal's address as Kommo sees it (default: KOMMO_PUBLIC_URL).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        account = account_from_option(options["account"])
        try:
            report = account_bootstrap(account=account, public_url=options["public_url"])
        except KommoError as error:
            raise CommandError(f"Kommo refused: {error}") from error
        for line in report.created:
            self.stdout.write(f"created  {line}")
        for line in report.found:
            self.stdout.write(f"found    {line}")
        for line in report.warnings:
            self.stdout.write(self.style.WARNING(f"warning  {line}"))
        if report.mappings_changed:
            # What the mappings now read is what the sync mirrored: its changes are recorded as the sync's.
            stakeholders_derive_for_account(account=account, provenance=Provenance(MirrorSource.SYNC))
            self.stdout.write("mapped   field mappings updated; stakeholders re-derived")
        else:
            self.stdout.write("mapped   field mappings unchanged")
        self.stdout.write(
            self.style.SUCCESS(f"{account}: {len(report.created)} created, {len(report.found)} found")
        )
