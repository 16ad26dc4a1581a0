"""A small WSGI toolkit: request and response objects, PHP-style query parsing and a regex router."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from kommo_sandbox.errors import ApiError, bad_request, empty_body

HAL_JSON = "application/hal+json"
PROBLEM_JSON = "application/problem+json"
HTML = "text/html; charset=utf-8"

REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    302: "Found",
    303: "See Other",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    504: "Gateway Time-out",
}

_KEY_PART = re.compile(r"\[([^\]]*)\]")


def parse_query(query_string: str) -> dict[str, Any]:
    """Parse ``a[b][]=1&a[b][]=2&c=3`` the way PHP does: nested dicts, ``[]`` appends to a list."""
    result: dict[str, Any] = {}
    for key, value in parse_qsl(query_string, keep_blank_values=True):
        head, _, rest = key.partition("[")
        parts = [head, *_KEY_PART.findall("[" + rest)] if rest else [head]
        node: Any = result
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == "":
                if not isinstance(node, list):
                    break
                if last:
                    node.append(value)
                else:
                    node.append({})
                    node = node[-1]
                continue
            if not isinstance(node, dict):
                break
            if last:
                node[part] = value
            else:
                next_is_append = parts[index + 1] == ""
                existing = node.get(part)
                if next_is_append and not isinstance(existing, list):
                    node[part] = []
                elif not next_is_append and not isinstance(existing, dict):
                    node[part] = {}
                node = node[part]
    return result


def as_list(value: Any) -> list[Any]:
    """A filter value as a list: ``[1, 2]``, ``{"0": 1}``, ``"1,2"`` and ``"1"`` all work."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return [v for v in str(value).split(",") if v != ""]


def as_dict(value: Any) -> dict[str, Any]:
    """A nested object (``filter``, ``_embedded``, ``metadata``) as a dict; ``{}`` for any other shape."""
    return value if isinstance(value, dict) else {}


def as_int_list(value: Any) -> list[int]:
    out = []
    for item in as_list(value):
        try:
            out.append(int(item))
        except (TypeError, ValueError):
            raise bad_request(f"Invalid filter value: {item}") from None
    return out


def as_int(value: Any, default: int | None = None) -> int | None:
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_request(f"Invalid integer: {value}") from None


@dataclass
class Request:
    method: str
    path: str
    query_string: str
    headers: dict[str, str]
    body: bytes
    remote_addr: str = ""
    query: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_environ(cls, environ: dict[str, Any]) -> Request:
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        query_string = environ.get("QUERY_STRING", "")
        raw_path = environ.get("PATH_INFO", "/") or "/"
        path = raw_path.encode("latin-1").decode("utf-8", "replace")
        return cls(
            method=environ.get("REQUEST_METHOD", "GET").upper(),
            path=path,
            query_string=query_string,
            headers=headers,
            body=body,
            remote_addr=environ.get("REMOTE_ADDR", ""),
            query=parse_query(query_string),
        )

    @property
    def host(self) -> str:
        return self.headers.get("host", "localhost")

    @property
    def origin(self) -> str:
        """``http://host:port`` as the client reached us: links in responses must be followable."""
        return f"http://{self.host}"

    def json(self) -> Any:
        """The JSON body; a missing or empty body is Kommo's 400 "Request data can not be empty"."""
        if not self.body.strip():
            raise empty_body()
        try:
            data = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise bad_request("Invalid JSON") from None
        if data in (None, [], {}):
            raise empty_body()
        return data

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def bearer(self) -> str | None:
        header = self.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)

    def header_list(self, request_id: str) -> list[tuple[str, str]]:
        headers = list(self.headers)
        if self.content_type:
            headers.append(("Content-Type", self.content_type))
        headers.append(("Content-Length", str(len(self.body))))
        headers.append(("X-Request-Id", request_id))
        return headers

    @property
    def status_line(self) -> str:
        return f"{self.status} {REASONS.get(self.status, 'Unknown')}"


def json_response(data: Any, status: int = 200, content_type: str = HAL_JSON) -> Response:
    return Response(status, json.dumps(data, ensure_ascii=False).encode("utf-8"), content_type)


def problem_response(error: ApiError) -> Response:
    return json_response(error.body(), error.status, PROBLEM_JSON)


def no_content() -> Response:
    """Kommo's 204: no body at all, not even ``{}``."""
    return Response(204)


def html_response(html: str, status: int = 200) -> Response:
    return Response(status, html.encode("utf-8"), HTML)


def redirect(location: str, status: int = 303) -> Response:
    return Response(status, b"", None, [("Location", location)])


def url_with(path: str, params: Iterable[tuple[str, Any]]) -> str:
    query = urlencode([(k, v) for k, v in params])
    return f"{path}?{query}" if query else path


Handler = Callable[..., Response]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


class Router:
    """Maps ``(method, path regex)`` to a handler; named groups become int keyword arguments."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append(Route(method, re.compile(f"^{pattern}/?$"), handler))

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, Any]] | str:
        """The handler and its arguments, or ``"405"`` when only the method is wrong, or ``"404"``."""
        method_mismatch = False
        for route in self.routes:
            match = route.pattern.match(path)
            if not match:
                continue
            if route.method != method:
                method_mismatch = True
                continue
            kwargs = {k: int(v) if v.isdigit() else v for k, v in match.groupdict().items()}
            return route.handler, kwargs
        return "405" if method_mismatch else "404"
