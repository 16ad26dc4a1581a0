"""The ``--account`` option shared by management commands: an account id, or the only account there is."""

from __future__ import annotations

from django.core.management.base import CommandError

from apps.kommo.models import KommoAccount


def account_from_option(account_id: int | None) -> KommoAccount:
    """The account with that local id; without one, the only account (several or none is an error)."""
    if account_id is not None:
        account = KommoAccount.objects.filter(pk=account_id).first()
        if account is None:
            raise CommandError(f"No Kommo account with id {account_id}.")
        return account
    found = list(KommoAccount.objects.order_by("pk")[:2])
    if len(found) != 1:
        raise CommandError(
            "Give --account ID: " + ("there is no Kommo account." if not found else "there are several.")
        )
    return found[0]
