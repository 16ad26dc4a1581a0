"""The intake's JSON parser: DRF's, refusing what the database could not store or Python could not walk.

A submission is stored as jsonb and as text. PostgreSQL refuses NUL in both (``\\u0000`` in a JSON string),
a lone surrogate (``\\ud800``) cannot be encoded to UTF-8 at all, and a document nested thousands of levels
deep exhausts Python's recursion while it is parsed or written out. Each is a parse error here, which the
view answers with a 400 problem detail, keeping the body as a rejected submission without its payload.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# Levels of objects and arrays a submission may nest; a real one nests 4 (contacts → person → emails).
MAX_DEPTH = 32


class IntakeJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError(f"JSON parse error - nested deeper than {MAX_DEPTH} levels") from exc
        problem = unstorable(data)
        if problem:
            raise ParseError(f"JSON parse error - {problem}")
        return data


def unstorable(data: Any) -> str:
    """Why ``data`` cannot be stored as it is ("" when it can), walked without recursion."""
    pending: list[tuple[Any, int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            if not _storable_text(value):
                return "a string holds NUL (\\u0000) or a lone surrogate"
            continue
        if not isinstance(value, Mapping | list):
            continue
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(value, Mapping):
            pending.extend((key, depth) for key in value)
            pending.extend((item, depth + 1) for item in value.values())
        else:
            pending.extend((item, depth + 1) for item in value)
    return ""


def _storable_text(value: str) -> bool:
    if value.isascii():
        return "\x00" not in value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value
