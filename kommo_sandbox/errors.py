"""Errors the sandbox answers with, in Kommo's problem+json shapes (``samples/error-*.json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
}


class ApiError(Exception):
    """An error answered as problem+json: ``{"title", "type", "status", "detail"}`` plus extras."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {
            "title": TITLES.get(self.status, "Error"),
            "type": f"https://httpstatus.es/{self.status}",
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }


def bad_request(detail: str) -> ApiError:
    return ApiError(400, detail)


def empty_body() -> ApiError:
    return ApiError(400, "Request data can not be empty")


def not_found(detail: str = "Not Found") -> ApiError:
    return ApiError(404, detail)


def forbidden_scope() -> ApiError:
    return ApiError(403, "Client doesn't have the required scope")


def limit_exceeded(limit: int = 250) -> ApiError:
    return ApiError(422, f"Limit {limit} per page")


@dataclass
class FieldError:
    code: str
    path: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "path": self.path, "detail": self.detail}


def not_supported_choice(path: str) -> FieldError:
    return FieldError("NotSupportedChoice", path, "The value you selected is not a valid choice.")


def invalid_type(path: str, type_name: str) -> FieldError:
    return FieldError("InvalidType", path, f"This value should be of type {type_name}.")


def not_blank(path: str) -> FieldError:
    return FieldError("NotBlank", path, "This value should not be blank.")


def too_many(path: str, limit: int) -> FieldError:
    return FieldError("TooMany", path, f"This collection should contain {limit} elements or less.")


def not_found_entity(path: str) -> FieldError:
    return FieldError("NotFound", path, "Entity not found.")


@dataclass
class ItemErrors:
    """Errors of one item of a batch, keyed by the item's ``request_id``."""

    request_id: str
    errors: list[FieldError] = field(default_factory=list)


class ValidationFailed(ApiError):
    """400 ``Request validation failed`` with ``validation-errors`` per failing item."""

    def __init__(self, items: list[ItemErrors]) -> None:
        super().__init__(400, "Request validation failed")
        self.items = items

    def body(self) -> dict[str, Any]:
        return {
            "validation-errors": [
                {"request_id": item.request_id, "errors": [e.as_dict() for e in item.errors]}
                for item in self.items
            ],
            **super().body(),
        }


class Collector:
    """Gathers item errors over a batch; :meth:`raise_if_any` turns them into :class:`ValidationFailed`."""

    def __init__(self) -> None:
        self.items: list[ItemErrors] = []

    def add(self, request_id: str, errors: list[FieldError]) -> None:
        if errors:
            self.items.append(ItemErrors(request_id, errors))

    def raise_if_any(self) -> None:
        if self.items:
            raise ValidationFailed(self.items)
