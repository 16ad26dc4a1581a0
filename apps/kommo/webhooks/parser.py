"""Kommo webhook bodies: the one place that understands their wire format (API.md §12).

Kommo posts ``application/x-www-form-urlencoded`` bodies with PHP bracket keys
(``leads[status][0][custom_fields][1][values][0]=1615845600``), every value a string, plus an
``account[...]`` block that comes first in some deliveries and last in others. JSON bodies with the same
structure (the documentation's renderings) are accepted too.

Two entry points:

* :func:`route` — what the request path needs and nothing more: the account block, the
  ``section[action]`` pairs and whether it is a Digital Pipeline hook. It looks at keys only (and at the
  values of the account keys), never builds the tree.
* :func:`parse` — the whole body as typed :class:`WebhookItem` rows, for the worker.

The quirks handled here, so that nothing past this module meets them: the legacy v2 field names are kept as
sent (``date_create``, ``last_modified``, ``modified_user_id``); date custom fields carry a bare timestamp
with no ``[value]`` key; a radiobutton's ``values`` may be one object instead of a list; companies arrive
under ``contacts`` with ``type=company``; tasks under the singular ``task``; catalog elements under
``catalogs``; an accepted or declined incoming lead is ``unsorted[delete]`` with ``action=accept|decline``;
notes nest their fields under ``[note]`` (a company's note comes under ``contacts[note]`` with
``element_type=3``). The order of keys never matters: the body becomes a tree of dicts, and items are
ordered by section, action and numeric index. A key that appears twice, or that is
both a value and a parent of other keys, makes the body ambiguous and is refused.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl, quote_plus, unquote_plus

Tree = dict[str, Any]

MAX_FIELDS = 20_000  # keys per body; a real delivery of 50 leads with 40 fields each stays far below
MAX_DEPTH = 12  # bracket levels per key; the deepest real key has 6 (…[custom_fields][i][values][j][enum])
MAX_ROUTED_EVENTS = 16  # distinct section[action] pairs kept in the routing summary
# Kommo's ids and timestamps fit in a signed 64-bit integer (the mirror's bigint columns); a longer number
# is refused rather than passed on to int() (which refuses more than 4300 digits) or to the database.
MAX_NUMBER = 2**63 - 1
MAX_INDEX_DIGITS = 9  # "[0]", "[1]", …: a list index longer than this is not one

FORM = "application/x-www-form-urlencoded"
_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_PART = re.compile(r"\[([^\[\]]*)\]")
_NUMBER = re.compile(r"\s*(-?)([0-9]+)\s*")  # ASCII digits only: str.isdigit() also accepts "²"
_INDEX = re.compile(f"[0-9]{{1,{MAX_INDEX_DIGITS}}}")

# Wire section → the entity its items describe (``contacts`` holds companies too, see WebhookItem).
SECTION_ENTITY = {
    "leads": "lead",
    "contacts": "contact",
    "companies": "company",
    "task": "task",
    "tasks": "task",
    "catalogs": "catalog_element",
    "unsorted": "unsorted",
    "message": "message",
    "talk": "talk",
    "customers": "customer",
}
ACCOUNT = "account"
COMPANY_ELEMENT_TYPE = "3"  # a note's element_type: 1 contact, 2 lead, 3 company
# The only fields of a Digital Pipeline "Send webhook" item (API.md §12.3).
DP_FIELDS = frozenset({"id", "status_id", "pipeline_id", "old_status_id", "old_pipeline_id"})


class WebhookParseError(ValueError):
    """The body is not a Kommo webhook this module can read."""


class Kind(StrEnum):
    GENERAL = "general"
    DIGITAL_PIPELINE = "digital_pipeline"


# -- the tree -------------------------------------------------------------------------------------------


def _checked(text: str, what: str) -> str:
    """``text`` unless it holds what no text column can store: NUL, or a lone surrogate (from JSON's
    ``\\ud800``; form bodies are decoded strictly and cannot carry one)."""
    if "\x00" in text:
        raise WebhookParseError(f"NUL character in a {what}")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise WebhookParseError(f"lone surrogate in a {what}") from exc
    return text


def _split_key(key: str) -> list[str]:
    if "\x00" in key:
        raise WebhookParseError("NUL character in a key")
    if key.count("[") > MAX_DEPTH:
        raise WebhookParseError(f"key nested deeper than {MAX_DEPTH} levels")
    match = _KEY.fullmatch(key)
    if match is None:  # not bracket syntax (e.g. "a]b" or "[x]"): PHP keeps such a key as one name
        return [key]
    head, brackets = match.groups()
    return [head, *_PART.findall(brackets)] if brackets else [head]


def _insert(tree: Tree, parts: list[str], value: str) -> None:
    node = tree
    for depth, part in enumerate(parts):
        if part == "":  # "[]" appends, as in PHP
            part = str(len(node))
        last = depth == len(parts) - 1
        existing = node.get(part)
        if last:
            if existing is not None:
                raise WebhookParseError(f"ambiguous body: {'['.join(parts[: depth + 1])!r} given twice")
            node[part] = value
            return
        if existing is None:
            existing = node[part] = {}
        elif not isinstance(existing, dict):
            raise WebhookParseError(f"ambiguous body: {part!r} is both a value and a parent")
        node = existing


def decode_form(body: bytes) -> Tree:
    """A form body as a tree of dicts (bracket keys nested, every leaf a string)."""
    try:
        pairs = parse_qsl(
            body.decode(),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except UnicodeDecodeError as exc:
        raise WebhookParseError("the body is not UTF-8") from exc
    except ValueError as exc:  # more than MAX_FIELDS fields
        raise WebhookParseError(str(exc)) from exc
    tree: Tree = {}
    for key, value in pairs:
        if "\x00" in value:
            raise WebhookParseError("NUL character in a value")
        _insert(tree, _split_key(key), value)
    return tree


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, Mapping):
        for name, child in value.items():
            yield from _flatten(f"{prefix}[{name}]" if prefix else str(name), child)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _flatten(f"{prefix}[{index}]", child)
    else:
        yield prefix, _wire_text(value)


def _wire_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def encode_form(tree: Mapping[str, Any]) -> bytes:
    """The form body Kommo would send for ``tree`` (lists as ``[0]``, ``[1]``; PHP's ``urlencode``)."""
    return "&".join(
        f"{quote_plus(key, safe='')}={quote_plus(value, safe='')}".replace("~", "%7E")
        for key, value in _flatten("", tree)
    ).encode()


def _stringify(value: Any, depth: int = 0) -> Any:
    """A JSON body in the tree's shape: lists become dicts keyed "0", "1", …; scalars strings."""
    if depth > MAX_DEPTH and isinstance(value, Mapping | list):
        raise WebhookParseError(f"JSON nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        return {_checked(str(name), "key"): _stringify(child, depth + 1) for name, child in value.items()}
    if isinstance(value, list):
        return {str(index): _stringify(child, depth + 1) for index, child in enumerate(value)}
    return _checked(_wire_text(value), "value")


def _is_json(body: bytes, content_type: str) -> bool:
    return "json" in content_type.lower() or body.lstrip()[:1] == b"{"


def decode(body: bytes, content_type: str = FORM) -> Tree:
    """The body as a tree, whether it came form-encoded (Kommo) or as JSON (tolerated)."""
    if not _is_json(body, content_type):
        return decode_form(body)
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookParseError(f"invalid JSON: {exc}") from exc
    except RecursionError as exc:
        raise WebhookParseError("JSON nested too deeply") from exc
    if not isinstance(data, dict):
        raise WebhookParseError("a JSON body must be an object")
    tree: Tree = _stringify(data)
    return tree


# -- routing: the cheap look at a body the request path takes ---------------------------------------------


@dataclass(frozen=True)
class Routing:
    """What the request needs to know: who the body claims to come from and what it is about."""

    account_id: str | None
    subdomain: str | None
    events: tuple[str, ...]  # sorted "section[action]" pairs, e.g. ("contacts[add]", "leads[status]")
    kind: Kind


def route(body: bytes, content_type: str = FORM) -> Routing:
    """The account block and ``section[action]`` pairs of a body, from its keys alone."""
    if _is_json(body, content_type):
        return _route_tree(decode(body, content_type))
    pieces = body.split(b"&")
    layout = tuple([piece.partition(b"=")[0] for piece in pieces])
    try:
        events, kind, account_at = (
            _layout_routing(layout) if len(body) <= CACHED_LAYOUT_BODY_BYTES else _keys_routing(layout)
        )
    except WebhookParseError:
        _refuse_in_order(pieces)  # the reason is the first pair's that cannot be read
        raise
    account = {
        name: _checked(_unquote(pieces[index].partition(b"=")[2]), "value") for name, index in account_at
    }
    return Routing(account_id=account.get("id"), subdomain=account.get("subdomain"), events=events, kind=kind)


# A body's layout: its keys as sent, in order, without the values. Kommo sends the same few layouts again
# and again (one per kind of event and set of custom fields of an account), and everything route() says
# but the account block's values follows from the layout alone, so it is worked out once per layout: the
# request then only splits the pairs and decodes the account's values.
CACHED_LAYOUT_BODY_BYTES = 16384  # longer bodies (of many items, or hostile) are routed without the cache
LayoutRouting = tuple[tuple[str, ...], Kind, tuple[tuple[str, int], ...]]


def _keys_routing(layout: tuple[bytes, ...]) -> LayoutRouting:
    """The events and kind of a body whose keys are ``layout``, and where its ``account[…]`` values are
    (by name and position among the pairs, in order); :class:`WebhookParseError` for a key that cannot be
    read."""
    account_at: list[tuple[str, int]] = []
    events: set[str] = set()
    general = False
    for index, raw_key in enumerate(layout):
        parts = _key_parts(raw_key)
        if parts[0] == ACCOUNT:
            if len(parts) == 2:
                account_at.append((parts[1], index))
            else:
                general = True  # account[_links][self]: Digital Pipeline hooks never carry it
            continue
        if len(parts) >= 2:
            events.add(f"{parts[0]}[{parts[1]}]")
        if len(parts) < 4 or parts[0] != "leads" or parts[3] not in DP_FIELDS:
            general = True
    routing = _routing({}, events, general)
    return routing.events, routing.kind, tuple(account_at)


_layout_routing = functools.lru_cache(maxsize=256)(_keys_routing)


def _refuse_in_order(pieces: list[bytes]) -> None:
    """Raises the :class:`WebhookParseError` of the first pair that cannot be read, its key or (in the
    account block) its value, as reading the pairs in order meets it."""
    for piece in pieces:
        raw_key, _, raw_value = piece.partition(b"=")
        parts = _key_parts(raw_key)
        if parts[0] == ACCOUNT and len(parts) == 2:
            _checked(_unquote(raw_value), "value")


# Kommo spells the same few dozen keys in every delivery: remembering how a short key splits saves the
# request path nearly all of its decoding. Long keys (only hostile bodies have them) are not remembered.
CACHED_KEY_BYTES = 200


@functools.lru_cache(maxsize=4096)
def _cached_key_parts(raw_key: bytes) -> tuple[str, ...]:
    return tuple(_split_key(_unquote(raw_key)))


def _key_parts(raw_key: bytes) -> tuple[str, ...]:
    if len(raw_key) <= CACHED_KEY_BYTES:
        return _cached_key_parts(raw_key)
    return tuple(_split_key(_unquote(raw_key)))


def _unquote(raw: bytes) -> str:
    try:
        return unquote_plus(raw.decode(), errors="strict")
    except UnicodeDecodeError as exc:
        raise WebhookParseError("the body is not UTF-8 form data") from exc


def _route_tree(tree: Tree) -> Routing:
    account = tree.get(ACCOUNT)
    account = account if isinstance(account, dict) else {}
    events: set[str] = set()
    general = "_links" in account
    for section, actions in tree.items():
        if section == ACCOUNT:
            continue
        if not isinstance(actions, dict):
            general = True
            continue
        for action, items in actions.items():
            events.add(f"{section}[{action}]")
            entries = list(items.values()) if isinstance(items, dict) else []
            if (
                section != "leads"
                or not entries
                or any(not isinstance(entry, dict) or not set(entry) <= DP_FIELDS for entry in entries)
            ):
                general = True
    flat = {name: value for name, value in account.items() if isinstance(value, str)}
    return _routing(flat, events, general)


def _routing(account: Mapping[str, str], events: set[str], general: bool) -> Routing:
    kind = Kind.DIGITAL_PIPELINE if events and not general else Kind.GENERAL
    return Routing(
        account_id=account.get("id"),
        subdomain=account.get("subdomain"),
        events=tuple(sorted(events)[:MAX_ROUTED_EVENTS]),
        kind=kind,
    )


# -- typed items ----------------------------------------------------------------------------------------


def to_int(value: Any) -> int | None:
    """Kommo's numeric strings; "" and anything that is not a whole number give None.
    :class:`WebhookParseError` for a whole number beyond a signed 64-bit integer (no Kommo id or time is)."""
    if not isinstance(value, str):
        return None
    match = _NUMBER.fullmatch(value)
    if match is None:
        return None
    sign, digits = match.groups()
    significant = digits.lstrip("0") or "0"
    if len(significant) > len(str(MAX_NUMBER)):
        raise WebhookParseError(f"number of {len(digits)} digits")
    number = int(significant)
    if number > MAX_NUMBER:
        raise WebhookParseError(f"number of {len(digits)} digits beyond 64 bits")
    return -number if sign else number


def to_datetime(value: Any) -> dt.datetime | None:
    """A unix timestamp string as an aware UTC datetime; None when there is none."""
    seconds = to_int(value)
    if seconds is None:
        return None
    try:
        return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _sequence(node: Any) -> list[Any]:
    """The children of a bracket-indexed node (``[0]``, ``[1]``, …) in numeric order."""
    if not isinstance(node, dict):
        return []
    numbered = sorted((int(name), child) for name, child in node.items() if _INDEX.fullmatch(name))
    return [child for _, child in numbered]


@dataclass(frozen=True)
class FieldValue:
    """One value of a custom field: the text as sent and, for enums, the enum id."""

    value: str
    enum_id: int | None = None


@dataclass(frozen=True)
class CustomField:
    id: int | None
    name: str
    code: str | None
    values: tuple[FieldValue, ...]

    @classmethod
    def from_node(cls, node: Mapping[str, Any]) -> CustomField:
        raw = node.get("values")
        if isinstance(raw, dict) and not any(_INDEX.fullmatch(name) for name in raw):
            entries: list[Any] = [raw]  # a radiobutton's value as one object, without an index
        else:
            entries = _sequence(raw)
        values = []
        for entry in entries:
            if isinstance(entry, str):  # date and date-time fields: a bare timestamp, no [value] key
                values.append(FieldValue(entry))
            elif isinstance(entry, dict):
                text = entry.get("value")
                values.append(FieldValue(text if isinstance(text, str) else "", to_int(entry.get("enum"))))
        code = node.get("code")
        name = node.get("name")
        return cls(
            id=to_int(node.get("id")),
            name=name if isinstance(name, str) else "",
            code=code if isinstance(code, str) else None,
            values=tuple(values),
        )


@dataclass(frozen=True)
class WebhookItem:
    """One entity in a body: ``entity`` (lead, contact, company, task, catalog_element, unsorted,
    message, talk, or an unknown section's name), the wire ``action``, the numeric Kommo ``id`` when it
    has one, and its ``fields`` as sent (nested dicts of strings, legacy names)."""

    entity: str
    action: str
    id: int | None
    fields: Mapping[str, Any]

    @property
    def event(self) -> tuple[str, str]:
        return self.entity, self.action

    def number(self, name: str) -> int | None:
        return to_int(self.fields.get(name))

    def moment(self, name: str) -> dt.datetime | None:
        return to_datetime(self.fields.get(name))

    @property
    def custom_fields(self) -> tuple[CustomField, ...]:
        return tuple(
            CustomField.from_node(node)
            for node in _sequence(self.fields.get("custom_fields"))
            if isinstance(node, dict)
        )

    def result_ids(self, entity_section: str) -> tuple[int, ...]:
        """Ids in an incoming lead's ``accept_result`` / ``decline_result`` (e.g. ``leads``)."""
        result = self.fields.get(f"{self.action}_result")
        if not isinstance(result, dict):
            return ()
        ids = (to_int(value) for value in _sequence(result.get(entity_section)))
        return tuple(value for value in ids if value is not None)


@dataclass(frozen=True)
class WebhookBody:
    account_id: int | None
    subdomain: str | None
    kind: Kind
    items: tuple[WebhookItem, ...]


def _item(section: str, action: str, node: Mapping[str, Any]) -> WebhookItem:
    entity = SECTION_ENTITY.get(section, section)
    fields: Mapping[str, Any] = node
    if action == "note" and isinstance(node.get("note"), dict):
        fields = node["note"]
        if entity == "contact" and fields.get("element_type") == COMPANY_ELEMENT_TYPE:
            entity = "company"
    elif entity == "contact" and node.get("type") == "company":
        entity = "company"
    elif entity == "unsorted" and action == "delete" and node.get("action") in ("accept", "decline"):
        action = str(node["action"])
    raw_id = fields.get("id")
    return WebhookItem(entity=entity, action=action, id=to_int(raw_id), fields=fields)


def items_of(tree: Tree) -> tuple[WebhookItem, ...]:
    items = []
    for section in sorted(tree):
        if section == ACCOUNT:
            continue
        actions = tree[section]
        if not isinstance(actions, dict):
            raise WebhookParseError(f"{section!r} is not a section of entities")
        for action in sorted(actions):
            entries = actions[action]
            if not isinstance(entries, dict) or not all(
                _INDEX.fullmatch(name) and isinstance(node, dict) for name, node in entries.items()
            ):
                raise WebhookParseError(f"{section}[{action}] is not a list of entities")
            items += [_item(section, action, node) for node in _sequence(entries)]
    return tuple(items)


def parse(body: bytes, content_type: str = FORM) -> WebhookBody:
    """The whole body as typed items; :class:`WebhookParseError` when it is not a Kommo webhook."""
    tree = decode(body, content_type)
    routing = _route_tree(tree)
    items = items_of(tree)
    if not items:
        raise WebhookParseError("no entities in the body")
    return WebhookBody(
        account_id=to_int(routing.account_id),
        subdomain=routing.subdomain,
        kind=routing.kind,
        items=items,
    )
