"""Install the two demo gate rules on an account's B2B pipeline; running it again changes nothing."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.gates.models import GateRule
from apps.gates.services import gate_rules_install_defaults
from apps.kommo.management.accounts import account_from_option


class Command(BaseCommand):
    help = (
        'Install the default gate rules: "an identified decision maker to leave DM qualification" and '
        '"the lawyer approved to leave Legal review", on the account\'s B2B pipeline.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", type=int, help="KommoAccount id (default: the only account)")
        parser.add_argument(
            "--mode", choices=GateRule.Mode.values, default=GateRule.Mode.ENFORCE, help="mode of new rules"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        account = account_from_option(options["account"])
        try:
            installed = gate_rules_install_defaults(account=account, mode=options["mode"])
        except ValueError as error:
            raise CommandError(str(error)) from error
        for rule, created in installed:
            verb = "installed" if created else "already there"
            self.stdout.write(f"{verb}: {rule.name} (rule {rule.pk}, {rule.get_mode_display()})")
