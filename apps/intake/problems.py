"""RFC 7807 problem details for the intake API: every error answer has ``type``, ``title``, ``status``,
``detail`` and, for an invalid body, ``errors``: dotted field path → messages."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.db import DatabaseError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

PROBLEM_JSON = "application/problem+json"

# Each problem type is described on the API docs page under this anchor.
INVALID_BODY = "/api/docs/#problem-invalid-body"
KEY_REUSED = "/api/docs/#problem-idempotency-key-reused"
UNAVAILABLE = "/api/docs/#problem-unavailable"

logger = logging.getLogger(__name__)


def flatten_errors(errors: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested serializer errors as ``{"contacts.0.emails.1": ["…"]}``. Errors of an object as a whole
    go under its own path (``contacts.0``), those of the whole body under ``"body"``."""
    flat: dict[str, list[str]] = {}
    if isinstance(errors, Mapping):
        for key, value in errors.items():
            if key in ("non_field_errors", "detail"):
                child = prefix
            else:
                child = f"{prefix}.{key}" if prefix else str(key)
            for path, messages in flatten_errors(value, child).items():
                flat.setdefault(path, []).extend(messages)
    elif isinstance(errors, list) and errors and all(isinstance(item, str) for item in errors):
        flat[prefix or "body"] = [str(item) for item in errors]
    elif isinstance(errors, list):
        for index, value in enumerate(errors):
            if value:
                for path, messages in flatten_errors(
                    value, f"{prefix}.{index}" if prefix else str(index)
                ).items():
                    flat.setdefault(path, []).extend(messages)
    else:
        flat[prefix or "body"] = [str(errors)]
    return flat


def problem(
    *, status_code: int, title: str, detail: str, type_: str = "about:blank", **extra: Any
) -> Response:
    body = {"type": type_, "title": title, "status": status_code, "detail": detail, **extra}
    return Response(body, status=status_code, content_type=PROBLEM_JSON)


def invalid_body(*, errors: dict[str, list[str]], submission_id: int | None) -> Response:
    count = len(errors)
    return problem(
        status_code=status.HTTP_400_BAD_REQUEST,
        title="The submission is invalid",
        detail=f"{count} field{'s' if count != 1 else ''} must be corrected; nothing was sent to the CRM.",
        type_=INVALID_BODY,
        errors=errors,
        submission_id=submission_id,
    )


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with its answer reshaped as problem details (authentication, method, media type)."""
    if isinstance(exc, DatabaseError):
        # The database is down or stuck past the request's statement timeout: nothing was stored, and the
        # client may send the same body again (its Idempotency-Key makes that safe).
        logger.warning("intake: database unavailable, answered 503: %s: %s", type(exc).__name__, exc)
        answer = problem(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            title="Service Unavailable",
            detail="The submission could not be stored; nothing was kept. Send it again shortly.",
            type_=UNAVAILABLE,
        )
        answer["Retry-After"] = "30"
        return answer
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    detail = exc.detail if isinstance(exc.detail, str) else "The request was refused."
    extra: dict[str, Any] = {}
    if isinstance(exc, exceptions.ValidationError):
        extra["errors"] = flatten_errors(exc.detail)
    answer = problem(
        status_code=response.status_code, title=response.status_text, detail=str(detail), **extra
    )
    for header in ("WWW-Authenticate", "Allow", "Retry-After"):
        if header in response:
            answer[header] = response[header]
    return answer
