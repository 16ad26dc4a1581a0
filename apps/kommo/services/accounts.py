"""Connected accounts: connecting, tokens, health state (auth errors, the circuit breaker).

Tokens, the record of auth errors and the opening of the circuit breaker are the client's, in
:mod:`apps.kommo.auth` (below the client); the functions here are their entry points for the rest of the
portal, beside what only the services do: connecting, verifying, closing the breaker.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from urllib.parse import urlencode

from django.core import signing
from django.db import transaction
from django.utils import timezone

from apps.kommo import auth
from apps.kommo import client as kommo_client
from apps.kommo.exceptions import KommoAuthError, KommoError
from apps.kommo.models.account import KommoAccount, new_webhook_token
from apps.kommo.models.outbound import OutboundChange
from apps.kommo.tasks import outbound_flush
from apps.kommo.types import Account, TokenPair
from apps.kommo.webhooks.processing import webhook_events_release

logger = logging.getLogger(__name__)

OAUTH_STATE_SALT = "apps.kommo.oauth-state"
OAUTH_STATE_MAX_AGE = 20 * 60  # Kommo's authorization codes live 20 minutes


# -- tokens and health: the client's, in apps.kommo.auth ---------------------------------------------------


def _token_exchange(account: KommoAccount, body: Mapping[str, str]) -> TokenPair:
    return kommo_client.KommoClient(account).oauth_token(body)


def account_token_refresh(*, account: KommoAccount, stale_access_token: str) -> str:
    """Exchange the refresh token for a new pair, once across every process (see
    :func:`apps.kommo.auth.token_refresh`)."""
    return auth.token_refresh(account, stale_access_token=stale_access_token, exchange=_token_exchange)


def account_auth_error_record(*, account: KommoAccount, message: str) -> None:
    auth.auth_error_record(account, message)


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
    webhook_events_release(account_id=account_id)


def _drain_held_changes(account_id: int) -> None:
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
    return auth.redirect_uri(account)


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
    auth.tokens_store(account, tokens)
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
