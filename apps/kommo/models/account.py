"""A connected Kommo account: where it lives, how the portal authenticates, and its health."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models

from apps.core.models import TimeStampedModel
from apps.kommo.models.fields import EncryptedTextField


def new_webhook_token() -> str:
    return secrets.token_urlsafe(32)


def default_rate_limit() -> float:
    return float(settings.KOMMO_RATE_LIMIT_PER_SECOND)


class KommoAccount(TimeStampedModel):
    """One Kommo account the portal serves. Tokens and the client secret are encrypted at rest."""

    class AuthKind(models.TextChoices):
        OAUTH = "oauth", "OAuth 2.0"
        LONG_LIVED = "long_lived", "Long-lived token"

    name = models.CharField(max_length=200)
    subdomain = models.CharField(max_length=100, blank=True, help_text="Filled from Kommo when connected.")
    base_url = models.URLField(
        max_length=300,
        help_text="The account's own address, e.g. https://example.kommo.com (or the sandbox's address).",
    )
    kommo_id = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Kommo's account id, read from GET /api/v4/account."
    )
    auth_kind = models.CharField(max_length=20, choices=AuthKind.choices, default=AuthKind.OAUTH)
    authorization_url = models.URLField(
        max_length=300,
        blank=True,
        help_text="Where an admin grants access. Empty: https://www.kommo.com/oauth for kommo.com hosts, "
        "https://www.amocrm.ru/oauth for amocrm.ru, else {base URL}/oauth.",
    )
    client_id = models.CharField("OAuth client id", max_length=200, blank=True)
    client_secret = EncryptedTextField("OAuth client secret", blank=True)
    redirect_uri = models.URLField(
        max_length=300,
        blank=True,
        help_text="Must equal the integration's redirect URI. Empty: this portal's OAuth callback.",
    )
    access_token = EncryptedTextField(blank=True, editable=False)
    refresh_token = EncryptedTextField(blank=True, editable=False)
    token_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    webhook_token = models.CharField(max_length=64, unique=True, default=new_webhook_token, editable=False)
    rate_limit_per_second = models.FloatField(
        default=default_rate_limit, help_text="Requests per second the portal allows itself on this account."
    )
    auth_error = models.TextField(blank=True, editable=False)
    auth_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_verified_at = models.DateTimeField(null=True, blank=True, editable=False)
    blocked_since = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Kommo blocked the account: no call goes out."
    )
    blocked_reason = models.TextField(blank=True, editable=False)
    outbound_flush_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When the next planned drain of the outbound queue is scheduled (one at a time).",
    )

    class Meta:
        verbose_name = "Kommo account"
        constraints = [
            models.UniqueConstraint(
                fields=["base_url", "kommo_id"],
                condition=models.Q(kommo_id__isnull=False),
                name="kommo_account_unique_remote_account",
            ),
            models.CheckConstraint(
                condition=models.Q(rate_limit_per_second__gt=0), name="kommo_account_rate_limit_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def api_root(self) -> str:
        return self.base_url.rstrip("/")

    @property
    def is_connected(self) -> bool:
        return bool(self.access_token)

    @property
    def is_blocked(self) -> bool:
        return self.blocked_since is not None

    @property
    def oauth_authorize_base(self) -> str:
        if self.authorization_url:
            return self.authorization_url
        host = (urlsplit(self.base_url).hostname or "").lower()
        if host == "kommo.com" or host.endswith(".kommo.com"):
            return "https://www.kommo.com/oauth"
        if host.endswith(".amocrm.ru"):
            return "https://www.amocrm.ru/oauth"
        if host.endswith(".amocrm.com"):
            return "https://www.amocrm.com/oauth"
        return f"{self.api_root}/oauth"

    @property
    def webhook_url(self) -> str:
        return f"{settings.KOMMO_PUBLIC_URL.rstrip('/')}/webhooks/kommo/{self.webhook_token}/"
