"""A rotated webhook token: the new one is accepted at once, the old one once the cached copy expires."""

import pytest

from apps.kommo.services.accounts import account_webhook_token_regenerate
from apps.kommo.webhooks import intake
from tests.factories import KommoAccountFactory

pytestmark = pytest.mark.django_db


def test_the_new_token_works_at_once_and_the_old_one_stops_when_the_copy_expires(monkeypatch):
    account = KommoAccountFactory(name="acme", base_url="https://acme.kommo.com")
    old = account.webhook_token
    assert intake.webhook_account_for_token(old).id == account.pk  # the copy now holds the old token

    new = account_webhook_token_regenerate(account=account)

    assert intake.webhook_account_for_token(new).id == account.pk
    monkeypatch.setattr(intake, "ACCOUNTS_TTL", -1.0)  # the copy has expired
    assert intake.webhook_account_for_token(old) is None
