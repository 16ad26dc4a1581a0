"""What every API handler uses: the request context, bodies, HAL lists, filters and ordering."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from kommo_sandbox.errors import (
    ApiError,
    ItemErrors,
    ValidationFailed,
    forbidden_scope,
    invalid_type,
    limit_exceeded,
)
from kommo_sandbox.fields import value_text
from kommo_sandbox.http import (
    Request,
    Response,
    as_int,
    as_int_list,
    json_response,
    no_content,
    url_with,
)
from kommo_sandbox.store import Account, SandboxStore

T = TypeVar("T")
MAX_LIMIT = 250
DEFAULT_LIMIT = 50


@dataclass
class Context:
    """One authenticated API request: the account it addresses and the Kommo user acting."""

    store: SandboxStore
    request: Request
    account: Account
    user_id: int

    @property
    def origin(self) -> str:
        return self.request.origin

    @property
    def query(self) -> dict[str, Any]:
        return self.request.query

    def with_(self) -> set[str]:
        raw = self.query.get("with", "")
        return {part.strip() for part in str(raw).split(",") if part.strip()}

    def require_admin(self) -> None:
        user = self.account.users.get(self.user_id)
        if user is None or not user.is_admin:
            raise forbidden_scope()


def body_list(ctx: Context, max_items: int = MAX_LIMIT) -> list[Any]:
    """A collection write body: a JSON array of at most ``max_items`` (more → 422 "Limit 250 per page")."""
    data = ctx.request.json()
    if not isinstance(data, list):
        raise ValidationFailed([ItemErrors("0", [invalid_type("", "array")])])
    if len(data) > max_items:
        raise limit_exceeded(max_items)
    return data


def body_object(ctx: Context) -> dict[str, Any]:
    """A single-entity write body: one JSON object (an array → 400)."""
    data = ctx.request.json()
    if not isinstance(data, dict):
        raise ValidationFailed([ItemErrors("0", [invalid_type("", "object")])])
    return data


def page_params(ctx: Context, max_limit: int = MAX_LIMIT) -> tuple[int, int]:
    page = as_int(ctx.query.get("page"), 1) or 1
    limit = as_int(ctx.query.get("limit"), min(DEFAULT_LIMIT, max_limit)) or min(DEFAULT_LIMIT, max_limit)
    return max(page, 1), max(1, min(limit, max_limit))


def _page_href(ctx: Context, page: int, limit: int) -> str:
    params = [
        (k, v)
        for k, v in parse_qsl(ctx.request.query_string, keep_blank_values=True)
        if k not in ("page", "limit")
    ]
    return ctx.origin + url_with(ctx.request.path.rstrip("/"), [*params, ("page", page), ("limit", limit)])


def hal_list(
    ctx: Context,
    key: str,
    items: list[T],
    serialize: Callable[[T], dict[str, Any]],
    max_limit: int = MAX_LIMIT,
    totals: bool = False,
) -> Response:
    """A HAL page of ``items``: ``_page``, ``_links.self`` / ``next`` (only when there is more), or 204."""
    page, limit = page_params(ctx, max_limit)
    start = (page - 1) * limit
    chunk = items[start : start + limit]
    if not chunk:
        return no_content()
    links: dict[str, Any] = {"self": {"href": _page_href(ctx, page, limit)}}
    if start + limit < len(items):
        links["next"] = {"href": _page_href(ctx, page + 1, limit)}
    if page > 1:
        links["first"] = {"href": _page_href(ctx, 1, limit)}
        links["prev"] = {"href": _page_href(ctx, page - 1, limit)}
    data: dict[str, Any] = {}
    if totals:
        page_count = (len(items) + limit - 1) // limit
        data["_total_items"] = len(items)
        data["_page"] = page
        data["_page_count"] = page_count
        links["last"] = {"href": _page_href(ctx, page_count, limit)}
    else:
        data["_page"] = page
    data["_links"] = links
    data["_embedded"] = {key: [serialize(item) for item in chunk]}
    return json_response(data)


def write_response(ctx: Context, key: str, entries: list[dict[str, Any]], status: int = 200) -> Response:
    return json_response(
        {"_links": {"self": {"href": ctx.origin + ctx.request.path}}, "_embedded": {key: entries}}, status
    )


def self_ref(ctx: Context, path: str) -> dict[str, Any]:
    return {"self": {"href": f"{ctx.origin}{path}"}}


# --- filters ------------------------------------------------------------------------------------------------


def id_filter(value: Any) -> set[int] | None:
    ids = as_int_list(value)
    return set(ids) if value is not None else None


def range_filter(value: Any) -> tuple[int | None, int | None] | None:
    """``filter[x][from|to]``, ``filter[x]=ts`` (from) or ``filter[x]=ts1,ts2``."""
    if value is None:
        return None
    if isinstance(value, dict):
        return as_int(value.get("from")), as_int(value.get("to"))
    if isinstance(value, str) and "," in value:
        start, _, end = value.partition(",")
        return as_int(start), as_int(end)
    return as_int(value), None


def in_range(value: int | None, bounds: tuple[int | None, int | None] | None) -> bool:
    if bounds is None:
        return True
    start, end = bounds
    if value is None:
        return False
    return (start is None or value >= start) and (end is None or value <= end)


def ordered(items: Iterable[T], ctx: Context, allowed: tuple[str, ...], default: str = "id") -> list[T]:
    """``order[field]=asc|desc`` over ``allowed`` fields; ties broken by id."""
    order = ctx.query.get("order")
    field, direction = default, "asc"
    if isinstance(order, dict) and order:
        field, direction = next(iter(order.items()))
        if field not in allowed or str(direction).lower() not in ("asc", "desc"):
            raise ApiError(400, f"Invalid order: {field}")
    reverse = str(direction).lower() == "desc"
    return sorted(items, key=lambda item: (getattr(item, field) or 0, item.id), reverse=reverse)  # type: ignore[attr-defined]


_DIGITS = re.compile(r"\D")


def matches_query(query: str, texts: Iterable[str], phones: Iterable[str] = ()) -> bool:
    """Kommo's ``query=``: a case-insensitive substring of any filled field; phones also match by digits."""
    needle = query.strip().lower()
    if not needle:
        return True
    if any(needle in text.lower() for text in texts):
        return True
    digits = _DIGITS.sub("", needle)
    if len(digits) >= 5:
        return any(digits in _DIGITS.sub("", phone) for phone in phones)
    return False


def cf_texts(values: list[dict[str, Any]]) -> list[str]:
    return [value_text(v) for item in values for v in item["values"]]
