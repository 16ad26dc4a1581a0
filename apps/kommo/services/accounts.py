"""Connected accounts: connecting, tokens, health state (auth errors, the circuit breaker).

A refresh token works once, so a refresh is single-flight: it happens under a row lock on the account,
and whoever gets the lock second re-reads the row and uses the token the first one obtained.
"""

from __future__ import annotations

import datetime as dt
import logging
from functools import partial
from urllib.parse import urlencode

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from apps.kommo import client as kommo_client
from apps.kommo.exceptions import KommoAuthError, KommoError
from apps.kommo.models.account import KommoAccount, new_webhook_token
from apps.kommo.models.outbound import OutboundChange
from apps.kommo.types import Account, TokenPair

logger = logging.getLogger(__name__)

OAUTH_STATE_SALT = "apps.kommo.oauth-state"
OAUTH_STATE_MAX_AGE = 20 * 60  # Kommo's authorization codes live 20 minutes
ERROR_TEXT_LIMIT = 2000


def _refresh_margin() -> dt.timedelta:
    return dt.timedelta(seconds=settings.KOMMO_TOKEN_REFRESH_MARGIN_SECONDS)


def _is_fresh(account: KommoAccount) -> bool:
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


# -- tokens ---------------------------------------------------------------------------------------------


def account_access_token(*, account: KommoAccount) -> str:
    """A token to call Kommo with; an OAuth token is refreshed when it expires within the margin."""
    if account.auth_kind == KommoAccount.AuthKind.LONG_LIVED:
        if not account.access_token:
            raise KommoAuthError("no long-lived token is set for this account")
        return str(account.access_token)
    if _is_fresh(account):
        return str(account.access_token)
    if not account.refresh_token:
        raise KommoAuthError("the account is not connected: connect it with OAuth first")
    return account_token_refresh(account=account, stale_access_token=str(account.access_token))


def account_token_refresh(*, account: KommoAccount, stale_access_token: str) -> str:
    """Exchange the refresh token for a new pair, once across every process: under a row lock, and only
    if nobody replaced ``stale_access_token`` meanwhile (else that newer token is used). A failure is
    recorded on the account and raised. Only an OAuth account has a refresh token (a long-lived token
    Kommo refuses is recorded by the client as such)."""
    failure: KommoError
    with transaction.atomic():
        # FOR NO KEY UPDATE: refreshes wait for each other, while the foreign-key checks of rows that point
        # at the account (every webhook INSERT, at its commit) do not wait for a call to Kommo.
        locked = KommoAccount.objects.select_for_update(no_key=True).get(pk=account.pk)
        if locked.access_token != stale_access_token and _is_fresh(locked):
            _adopt(account, locked)
            return str(locked.access_token)
        if not locked.refresh_token:
            failure = KommoAuthError("no refresh token: connect the account with OAuth again")
        else:
            try:
                tokens = kommo_client.KommoClient(locked).oauth_token(
                    {
                        "client_id": locked.client_id,
                        "client_secret": locked.client_secret,
                        "grant_type": "refresh_token",
                        "refresh_token": locked.refresh_token,
                        "redirect_uri": account_redirect_uri(account=locked),
                    }
                )
            except KommoError as exc:
                failure = exc
            else:
                _store_tokens(locked, tokens)
                _adopt(account, locked)
                logger.info("kommo account %s: access token refreshed", account.pk)
                return tokens.access_token
    account_auth_error_record(account=account, message=f"token refresh failed: {failure}")
    raise failure


def _store_tokens(account: KommoAccount, tokens: TokenPair) -> None:
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


# -- health -------------------------------------------------------------------------------------------


def account_auth_error_record(*, account: KommoAccount, message: str) -> None:
    account.auth_error = message[:ERROR_TEXT_LIMIT]
    account.auth_error_at = timezone.now()
    if account.pk is not None:
        KommoAccount.objects.filter(pk=account.pk).update(
            auth_error=account.auth_error, auth_error_at=account.auth_error_at
        )
    logger.warning("kommo account %s: %s", account.pk, account.auth_error)


def account_auth_error_clear(*, account: KommoAccount) -> None:
    account.auth_error = ""
    account.auth_error_at = None
    if account.pk is not None:
        KommoAccount.objects.filter(pk=account.pk).update(auth_error="", auth_error_at=None)


def account_block(*, account: KommoAccount, reason: str) -> None:
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


def account_unblock(*, account: KommoAccount) -> bool:
    """Close the circuit breaker; returns whether it was open. What was held while it was open goes on as
    soon as this commits: the outbound changes (moves back, tasks, notes) are drained and the webhook
    events waiting are processed."""
    was_blocked = KommoAccount.objects.filter(pk=account.pk, blocked_since__isnull=False).update(
        blocked_since=None, blocked_reason=""
    )
    account.blocked_since = None
    account.blocked_reason = ""
    if was_blocked:
        transaction.on_commit(partial(_drain_held_changes, account.pk))
        transaction.on_commit(partial(_release_held_events, account.pk))
    return bool(was_blocked)


def _release_held_events(account_id: int) -> None:
    # Processing imports the client, which imports this module: imported when needed.
    from apps.kommo.webhooks.processing import webhook_events_release

    webhook_events_release(account_id=account_id)


def _drain_held_changes(account_id: int) -> None:
    from apps.kommo.tasks import outbound_flush  # the tasks import the services: imported when needed

    held = OutboundChange.objects.filter(
        account_id=account_id,
        status__in=[
            OutboundChange.Status.PENDING,
            OutboundChange.Status.UNKNOWN,
            OutboundChange.Status.SENDING,
        ],
    )
    if held.exists():
        outbound_flush.apply_async((account_id,), kwargs={"reserved": False})


def account_webhook_token_regenerate(*, account: KommoAccount) -> str:
    """A new secret webhook path; Kommo must be told the new URL. The new one works at once; the old one
    answers 404 once each web process's copy of the tokens expires (``ACCOUNTS_TTL``, a few seconds)."""
    account.webhook_token = new_webhook_token()
    account.save(update_fields=["webhook_token", "modified"])
    return str(account.webhook_token)


def account_verify(*, account: KommoAccount) -> Account:
    """Call ``GET /api/v4/account`` and store who the token belongs to."""
    info = kommo_client.KommoClient(account).account_get()
    account.kommo_id = info.id
    account.subdomain = account.subdomain or info.subdomain
    account.last_verified_at = timezone.now()
    account.auth_error = ""
    account.auth_error_at = None
    account.save(
        update_fields=["kommo_id", "subdomain", "last_verified_at", "auth_error", "auth_error_at", "modified"]
    )
    return info


# -- connecting -----------------------------------------------------------------------------------------


def account_redirect_uri(*, account: KommoAccount) -> str:
    if account.redirect_uri:
        return str(account.redirect_uri)
    return str(settings.KOMMO_PUBLIC_URL).rstrip("/") + reverse("kommo:oauth-callback")


def account_oauth_authorization_url(*, account: KommoAccount) -> str:
    """Where to send the admin to grant access; ``state`` is signed and names the account."""
    if not account.client_id:
        raise ValueError("set the OAuth client id (the integration id) first")
    state = signing.dumps({"account": account.pk}, salt=OAUTH_STATE_SALT)
    query = urlencode({"client_id": account.client_id, "state": state, "mode": "post_message"})
    return f"{account.oauth_authorize_base}?{query}"


def account_oauth_complete(*, state: str, code: str) -> KommoAccount:
    """The OAuth callback: check the signed state, exchange the code, read the account, save."""
    try:
        payload = signing.loads(state, salt=OAUTH_STATE_SALT, max_age=OAUTH_STATE_MAX_AGE)
    except signing.BadSignature as exc:
        raise KommoAuthError("the OAuth state is invalid or expired: start the connection again") from exc
    account = KommoAccount.objects.get(pk=payload["account"])
    try:
        tokens = kommo_client.KommoClient(account).oauth_token(
            {
                "client_id": account.client_id,
                "client_secret": account.client_secret,
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": account_redirect_uri(account=account),
            }
        )
    except KommoError as exc:
        account_auth_error_record(account=account, message=f"authorization code exchange failed: {exc}")
        raise
    _store_tokens(account, tokens)
    account_verify(account=account)
    return account


def account_long_lived_token_set(*, account: KommoAccount, token: str) -> Account:
    """Switch the account to a long-lived token, after Kommo accepted it (one ``GET /api/v4/account``,
    whose answer is stored as the verification)."""
    probe = KommoAccount(
        base_url=account.base_url,
        auth_kind=KommoAccount.AuthKind.LONG_LIVED,
        access_token=token,
        rate_limit_per_second=account.rate_limit_per_second,
    )
    info = kommo_client.KommoClient(probe).account_get()
    _long_lived_token_use(account, token=token, info=info)
    account.subdomain = account.subdomain or info.subdomain
    account.save()
    return info


def account_connect_with_token(
    *, base_url: str, token: str, subdomain: str = "", name: str = ""
) -> tuple[KommoAccount, bool]:
    """Create or update the account a long-lived token belongs to (one row per base URL and Kommo account
    id); returns it and whether it was created. The token is checked with Kommo before anything is saved."""
    base_url = base_url.rstrip("/")
    probe = KommoAccount(base_url=base_url, auth_kind=KommoAccount.AuthKind.LONG_LIVED, access_token=token)
    info = kommo_client.KommoClient(probe).account_get()
    with transaction.atomic():
        account = KommoAccount.objects.select_for_update().filter(base_url=base_url, kommo_id=info.id).first()
        created = account is None
        if account is None:
            account = KommoAccount(base_url=base_url)
        _long_lived_token_use(account, token=token, info=info)
        account.name = name or account.name or info.name or info.subdomain
        account.subdomain = subdomain or info.subdomain
        account.save()
    return account, created


def _long_lived_token_use(account: KommoAccount, *, token: str, info: Account) -> None:
    """Put a long-lived token Kommo has just accepted on ``account`` (unsaved); ``info`` is Kommo's answer
    to ``GET /api/v4/account`` with that token."""
    account.auth_kind = KommoAccount.AuthKind.LONG_LIVED
    account.access_token = token
    account.refresh_token = ""
    account.token_expires_at = None
    account.kommo_id = info.id
    account.auth_error = ""
    account.auth_error_at = None
    account.last_verified_at = timezone.now()
