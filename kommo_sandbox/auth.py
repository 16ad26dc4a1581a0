"""Tokens: long-lived tokens, OAuth 2.0 codes, access tokens and rotating refresh tokens (API.md §1).

Rules emulated:

- authorization codes live 20 minutes and work once;
- access tokens live 24 hours, refresh tokens 3 months; every refresh returns a new pair;
- the previous refresh token keeps working until the new pair (its access token or its refresh token) has
  been used once; a repeated refresh with the previous token replaces the unused pair it got last time;
- long-lived tokens have no refresh token and act as the user they were issued for.

Tokens look like Kommo's: JWTs (HS256) carrying the account id, user id and integration id.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CODE_TTL = 20 * 60
ACCESS_TTL = 24 * 3600
REFRESH_TTL = 90 * 24 * 3600
LONG_LIVED_TTL = 5 * 365 * 24 * 3600


@dataclass
class Integration:
    client_id: str
    client_secret: str
    redirect_uri: str
    name: str = "Kommo B2B Portal"


@dataclass
class AccessToken:
    token: str
    account_id: int
    user_id: int
    expires_at: int
    client_id: str | None = None
    refresh_token: str | None = None  # the refresh token issued with it (None for long-lived tokens)
    revoked: bool = False


@dataclass
class RefreshToken:
    token: str
    account_id: int
    user_id: int
    client_id: str
    expires_at: int
    parent: str | None = None  # the refresh token this one replaced
    successor: str | None = None  # the refresh token issued when this one was used
    used: bool = False  # this pair (access or refresh) has been used at least once
    revoked: bool = False


@dataclass
class AuthCode:
    code: str
    account_id: int
    user_id: int
    client_id: str
    expires_at: int
    used: bool = False


@dataclass
class Principal:
    """Who is calling: the account and the Kommo user the token acts as."""

    account_id: int
    user_id: int
    token: str
    client_id: str | None


class OAuthError(Exception):
    def __init__(self, status: int, hint: str) -> None:
        super().__init__(hint)
        self.status = status
        self.hint = hint

    def body(self) -> dict[str, Any]:
        """The body of ``samples/error-oauth-token-revoked.json``."""
        return {
            "hint": self.hint,
            "title": "Некорректный запрос",
            "type": "https://developers.amocrm.ru/v3/errors/OAuthProblemJson",
            "status": self.status,
            "detail": "В запросе отсутствует ряд параметров или параметры невалидны",  # noqa: RUF001 - verbatim
        }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class AuthRegistry:
    """Integrations and tokens of all accounts; thread-safe on its own lock."""

    def __init__(self, secret: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.secret = secret or secrets.token_hex(32)
        self.clock = clock
        self._lock = threading.RLock()
        self.integrations: dict[str, Integration] = {}
        self.access: dict[str, AccessToken] = {}
        self.refresh: dict[str, RefreshToken] = {}
        self.codes: dict[str, AuthCode] = {}

    def now(self) -> int:
        return int(self.clock())

    def _jwt(self, account_id: int, user_id: int, client_id: str | None, expires_at: int) -> str:
        header = {"typ": "JWT", "alg": "HS256"}
        now = self.now()
        payload = {
            "aud": client_id or "long-lived",
            "jti": secrets.token_hex(16),
            "iat": now,
            "nbf": now,
            "exp": expires_at,
            "sub": str(user_id),
            "account_id": account_id,
            "base_domain": "kommo.com",
            "version": 2,
            "scopes": ["crm", "files", "notifications", "push_notifications"],
        }
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
        signature = hmac.new(self.secret.encode(), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(signature)}"

    # --- setup ----------------------------------------------------------------------------------------------

    def add_integration(self, integration: Integration) -> None:
        with self._lock:
            self.integrations[integration.client_id] = integration

    def add_long_lived(self, account_id: int, user_id: int, token: str | None = None) -> str:
        with self._lock:
            token = token or self._jwt(account_id, user_id, None, self.now() + LONG_LIVED_TTL)
            self.access[token] = AccessToken(token, account_id, user_id, self.now() + LONG_LIVED_TTL)
            return token

    # --- authorization code flow ----------------------------------------------------------------------------

    def issue_code(self, client_id: str, account_id: int, user_id: int) -> str:
        with self._lock:
            code = secrets.token_hex(32)
            self.codes[code] = AuthCode(code, account_id, user_id, client_id, self.now() + CODE_TTL)
            return code

    def _client(self, data: dict[str, Any]) -> Integration:
        integration = self.integrations.get(str(data.get("client_id", "")))
        if integration is None or not hmac.compare_digest(
            integration.client_secret, str(data.get("client_secret", ""))
        ):
            raise OAuthError(401, "Client authentication failed")
        if data.get("redirect_uri") != integration.redirect_uri:
            raise OAuthError(400, "Redirect URI mismatch")
        return integration

    def _issue_pair(
        self, account_id: int, user_id: int, client_id: str, parent: str | None
    ) -> dict[str, Any]:
        now = self.now()
        refresh = RefreshToken(
            secrets.token_hex(64), account_id, user_id, client_id, now + REFRESH_TTL, parent
        )
        access = self._jwt(account_id, user_id, client_id, now + ACCESS_TTL)
        self.refresh[refresh.token] = refresh
        self.access[access] = AccessToken(
            access, account_id, user_id, now + ACCESS_TTL, client_id, refresh.token
        )
        return {
            "token_type": "Bearer",
            "expires_in": ACCESS_TTL,
            "access_token": access,
            "refresh_token": refresh.token,
            "server_time": now,
        }

    def exchange(self, data: dict[str, Any]) -> dict[str, Any]:
        """``POST /oauth2/access_token``: the token response, or :class:`OAuthError`."""
        with self._lock:
            grant = data.get("grant_type")
            if grant not in ("authorization_code", "refresh_token"):
                raise OAuthError(400, "Unsupported grant type")
            integration = self._client(data)
            if grant == "authorization_code":
                code = self.codes.get(str(data.get("code", "")))
                if code is None or code.client_id != integration.client_id:
                    raise OAuthError(400, "Authorization code is invalid")
                if code.used:
                    raise OAuthError(400, "Authorization code has been revoked")
                if code.expires_at < self.now():
                    raise OAuthError(400, "Authorization code has expired")
                code.used = True
                return self._issue_pair(code.account_id, code.user_id, integration.client_id, None)
            return self._refresh(str(data.get("refresh_token", "")), integration)

    def _refresh(self, token: str, integration: Integration) -> dict[str, Any]:
        record = self.refresh.get(token)
        if record is None or record.client_id != integration.client_id:
            raise OAuthError(401, "Token is invalid")
        if record.revoked:
            raise OAuthError(401, "Token has been revoked")
        if record.expires_at < self.now():
            raise OAuthError(401, "Token has expired")
        self._mark_used(record)
        if record.successor is not None:
            # A retry with this token: the pair issued last time was never used; replace it.
            self._revoke_pair(record.successor)
        pair = self._issue_pair(record.account_id, record.user_id, record.client_id, parent=record.token)
        record.successor = pair["refresh_token"]
        return pair

    def _mark_used(self, record: RefreshToken) -> None:
        """The pair of ``record`` is in use: the token it replaced stops working."""
        record.used = True
        if record.parent is not None:
            parent = self.refresh.get(record.parent)
            if parent is not None:
                parent.revoked = True

    def _revoke_pair(self, refresh_token: str) -> None:
        record = self.refresh.get(refresh_token)
        if record is not None:
            record.revoked = True
        for access in self.access.values():
            if access.refresh_token == refresh_token:
                access.revoked = True

    # --- API authentication -------------------------------------------------------------------------------

    def authenticate(self, token: str | None) -> Principal | None:
        if not token:
            return None
        with self._lock:
            record = self.access.get(token)
            if record is None or record.revoked or record.expires_at < self.now():
                return None
            if record.refresh_token is not None:
                refresh = self.refresh.get(record.refresh_token)
                if refresh is not None and not refresh.used:
                    self._mark_used(refresh)
            return Principal(record.account_id, record.user_id, token, record.client_id)

    def revoke_account(self, account_id: int) -> None:
        """Disable the integration in an account: every token of it answers 401 from now on."""
        with self._lock:
            for access in self.access.values():
                if access.account_id == account_id and access.refresh_token is not None:
                    access.revoked = True
            for refresh in self.refresh.values():
                if refresh.account_id == account_id:
                    refresh.revoked = True

    # --- snapshot -------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "secret": self.secret,
                "integrations": [dataclasses.asdict(i) for i in self.integrations.values()],
                "access": [dataclasses.asdict(t) for t in self.access.values()],
                "refresh": [dataclasses.asdict(t) for t in self.refresh.values()],
                "codes": [dataclasses.asdict(c) for c in self.codes.values()],
            }

    def restore(self, data: dict[str, Any]) -> None:
        with self._lock:
            self.secret = data["secret"]
            self.integrations = {i["client_id"]: Integration(**i) for i in data["integrations"]}
            self.access = {t["token"]: AccessToken(**t) for t in data["access"]}
            self.refresh = {t["token"]: RefreshToken(**t) for t in data["refresh"]}
            self.codes = {c["code"]: AuthCode(**c) for c in data["codes"]}
