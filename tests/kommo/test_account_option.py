import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.kommo.management.accounts import account_from_option
from apps.kommo.models import KommoAccount
from tests.factories import KommoAccountFactory

pytestmark = pytest.mark.django_db


def account(name: str) -> KommoAccount:
    return KommoAccountFactory(name=name, base_url=f"https://{name}.kommo.com")


def test_without_an_id_the_only_account_is_chosen():
    only = account("acme")

    assert account_from_option(None) == only


def test_without_an_id_no_account_or_several_accounts_are_an_error():
    with pytest.raises(CommandError, match="there is no Kommo account"):
        account_from_option(None)
    account("acme"), account("globex")
    with pytest.raises(CommandError, match="there are several"):
        account_from_option(None)


def test_an_id_chooses_that_account_and_an_unknown_id_is_an_error():
    acme, globex = account("acme"), account("globex")

    assert account_from_option(globex.pk) == globex
    with pytest.raises(CommandError, match=f"No Kommo account with id {acme.pk + globex.pk}"):
        account_from_option(acme.pk + globex.pk)


def test_the_commands_use_it():
    account("acme"), account("globex")

    for command in (
        ["kommo_bootstrap", "--public-url", "https://portal.example.com"],
        ["gates_install_defaults"],
    ):
        with pytest.raises(CommandError, match="there are several"):
            call_command(*command)
