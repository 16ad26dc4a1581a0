"""Errors raised at the Kommo boundary.

Each class says whether retrying the same request can ever succeed (``permanent``); callers decide on
retries from the type, never from the message. Kommo answers errors as ``application/problem+json``
(``title``, ``type``, ``status``, ``detail``, for 400 also ``validation-errors``); some answers (the 403
block page, many 429s) are HTML, and those are classified by status alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ValidationIssue:
    """One entry of ``validation-errors[].errors``: what is wrong with which field of one batch item."""

    code: str
    path: str
    detail: str


class KommoError(Exception):
    """Base of every error raised by the Kommo client."""

    permanent: bool = True

    def __init__(
        self,
        detail: str = "",
        *,
        status: int | None = None,
        request_id: str | None = None,
        problem: dict[str, Any] | None = None,
    ) -> None:
        self.detail = detail
        self.status = status
        self.request_id = request_id
        self.problem: dict[str, Any] = problem or {}
        super().__init__(detail)

    def __str__(self) -> str:
        parts = [f"HTTP {self.status}" if self.status is not None else type(self).__name__]
        if self.detail:
            parts.append(self.detail)
        if self.request_id:
            parts.append(f"(request id {self.request_id})")
        return " ".join(parts)


class KommoPayloadError(KommoError):
    """Kommo answered something that does not have the documented shape."""


class KommoValidationError(KommoError):
    """400: the request was refused; ``errors`` maps each batch item's request_id to what is wrong with it."""

    def __init__(
        self,
        detail: str = "",
        *,
        errors: dict[str, list[ValidationIssue]] | None = None,
        status: int | None = 400,
        request_id: str | None = None,
        problem: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail, status=status, request_id=request_id, problem=problem)
        self.errors: dict[str, list[ValidationIssue]] = errors or {}

    def __str__(self) -> str:
        text = super().__str__()
        if self.errors:
            text += ": " + "; ".join(
                f"[{item}] {issue.path}: {issue.code}"
                for item, issues in self.errors.items()
                for issue in issues
            )
        return text


class KommoAuthError(KommoError):
    """401: the token is invalid, expired or revoked, or the refresh token was already used."""


class KommoPaymentRequired(KommoError):
    """402: the account's paid or trial period is over."""


class KommoForbidden(KommoError):
    """403 with a problem body: the token lacks a scope or the user lacks rights."""


class KommoBlocked(KommoError):
    """403 HTML block page after repeated rate-limit violations: no call goes out until an admin resets it."""


class KommoNotFound(KommoError):
    """404: the resource or the route does not exist."""


class KommoUnprocessable(KommoError):
    """405/422 and other 4xx answers: the request itself is wrong (e.g. "Limit 250 per page")."""


class KommoRateLimited(KommoError):
    """429: too many requests. ``retry_after`` (seconds) when Kommo said it, else None."""

    permanent = False

    def __init__(self, detail: str = "", *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.retry_after = retry_after


class KommoServerError(KommoError):
    """5xx: Kommo failed; the same request may succeed later."""

    permanent = False


class KommoGatewayTimeout(KommoServerError):
    """504: for batch writes Kommo means "the batch is too large", so the client halves it."""


class KommoTimeout(KommoError):
    """No answer in time. For a write the outcome is unknown: check before repeating it."""

    permanent = False


class KommoConnectionError(KommoError):
    """Kommo could not be reached."""

    permanent = False
