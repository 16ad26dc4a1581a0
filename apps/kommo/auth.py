"""What the Kommo client needs of an account to make a call: a token, the record of auth failures, and the
circuit breaker. It sits below the client (it imports no client, service, task or webhook module: an
import contract keeps it so), so that the client depends on nothing that depends on the client.

A refresh token works once, so a refresh is single-flight: it happens under a row lock on the account,
and whoever gets the lock second re-reads the row and uses the token the first one obtained. The call to
Kommo's token endpoint is the client's (``exchange``).

Closing the circuit breaker sends on what was held, which is the services' business
(:func:`apps.kommo.services.accounts.account_unblock`); opening it is the client's, here.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from apps.kommo.exceptions import KommoAuthError, KommoError
from apps.kommo.models.account import KommoAccount
from apps.kommo.types import TokenPair

logger = logging.getLogger(__name__)

ERROR_TEXT_LIMIT = 2000
LONG_LIVED_REFUSED = "Kommo refused the long-lived token (expired or revoked): set a new one"

# Kommo's token endpoint, as the client calls it: the account to call for and the form to send.
Exchange = Callable[[KommoAccount, Mapping[str, str]], TokenPair]


def redirect_uri(account: KommoAccount) -> str:
    """The OAuth redirect URI Kommo knows the integration by (sent again with every refresh)."""
    if account.redirect_uri:
        return str(account.redirect_uri)
    return str(settings.KOMMO_PUBLIC_URL).rstrip("/") + reverse("kommo:oauth-callback")


def _refresh_margin() -> dt.timedelta:
    return dt.timedelta(seconds=settings.KOMMO_TOKEN_REFRESH_MARGIN_SECONDS)


def is_fresh(account: KommoAccount) -> bool:
    """Whether the account's access token is good beyond the refresh margin."""
    return (
        bool(account.access_token)
        and account.token_expires_at is not None
        and account.token_expires_at - _refresh_margin() > timezone.now()
    )


def _adopt(target: KommoAccount, source: KommoAccount) -> None:
    target.access_token = source.access_token
    target.refresh_token = source.refresh_token
    target.token_expires_at = source.token_expires_at
    target.auth_error = source.auth_error
    target.auth_error_at = source.auth_error_at


def access_token(account: KommoAccount, *, exchange: Exchange) -> str:
    """A token to call Kommo with; an OAuth token is refreshed when it expires within the margin."""
    if account.auth_kind == KommoAccount.AuthKind.LONG_LIVED:
        if not account.access_token:
            raise KommoAuthError("no long-lived token is set for this account")
        return str(account.access_token)
    if is_fresh(account):
        return str(account.access_token)
    if not account.refresh_token:
        raise KommoAuthError("the account is not connected: connect it with OAuth first")
    return token_refresh(account, stale_access_token=str(account.access_token), exchange=exchange)


def token_refresh(account: KommoAccount, *, stale_access_token: str, exchange: Exchange) -> str:
    """Exchange the OAuth refresh token for a new pair, once across every process: under a row lock, and
    only if nobody replaced ``stale_access_token`` meanwhile (else that newer token is used). A failure is
    recorded on the account and raised. Only an OAuth account has a refresh token: a long-lived token
    Kommo refuses is recorded by the client as such (:data:`LONG_LIVED_REFUSED`)."""
    failure: KommoError
    with transaction.atomic():
        # FOR NO KEY UPDATE: refreshes wait for each other, while the foreign-key checks of rows that point
        # at the account (every webhook INSERT, at its commit) do not wait for a call to Kommo.
        locked = KommoAccount.objects.select_for_update(no_key=True).get(pk=account.pk)
        if locked.access_token != stale_access_token and is_fresh(locked):
            _adopt(account, locked)
            return str(locked.access_token)
        if not locked.refresh_token:
            failure = KommoAuthError("no refresh token: connect the account with OAuth again")
        else:
            try:
                tokens = exchange(
                    locked,
                    {
                        "client_id": locked.client_id,
                        "client_secret": locked.client_secret,
                        "grant_type": "refresh_token",
                        "refresh_token": locked.refresh_token,
                        "redirect_uri": redirect_uri(locked),
                    },
                )
            except KommoError as exc:
                failure = exc
            else:
                tokens_store(locked, tokens)
                _adopt(account, locked)
                logger.info("kommo account %s: access token refreshed", account.pk)
                return tokens.access_token
    auth_error_record(account, f"token refresh failed: {failure}")
    raise failure


def tokens_store(account: KommoAccount, tokens: TokenPair) -> None:
    """Save an OAuth token pair on ``account``, which makes it (or keeps it) an OAuth account."""
    account.auth_kind = KommoAccount.AuthKind.OAUTH
    account.access_token = tokens.access_token
    account.refresh_token = tokens.refresh_token
    account.token_expires_at = tokens.expires_at
    account.auth_error = ""
    account.auth_error_at = None
    account.save(
        update_fields=[
            "auth_kind",
            "access_token",
            "refresh_token",
            "token_expires_at",
            "auth_error",
            "auth_error_at",
            "modified",
        ]
    )


def auth_error_record(account: KommoAccount, message: str) -> None:
    account.auth_error = message[:ERROR_TEXT_LIMIT]
    account.auth_error_at = timezone.now()
    if account.pk is not None:
        KommoAccount.objects.filter(pk=account.pk).update(
            auth_error=account.auth_error, auth_error_at=account.auth_error_at
        )
    logger.warning("kommo account %s: %s", account.pk, account.auth_error)


def auth_error_clear(account: KommoAccount) -> None:
    account.auth_error = ""
    account.auth_error_at = None
    if account.pk is not None:
        KommoAccount.objects.filter(pk=account.pk).update(auth_error="", auth_error_at=None)


def block(account: KommoAccount, reason: str) -> None:
    """Open the circuit breaker: Kommo blocked the account, no call may leave until an admin resets it."""
    now = timezone.now()
    if account.blocked_since is None:
        account.blocked_since = now
        account.blocked_reason = reason[:ERROR_TEXT_LIMIT]
    if account.pk is not None:
        KommoAccount.objects.filter(pk=account.pk, blocked_since__isnull=True).update(
            blocked_since=now, blocked_reason=reason[:ERROR_TEXT_LIMIT]
        )
    logger.error("kommo account %s: blocked by Kommo, calls stopped: %s", account.pk, reason)
