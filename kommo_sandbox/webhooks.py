"""The sandbox's webhook sender: Kommo's general webhooks and Digital Pipeline "Send webhook" hooks.

Two halves:

* The wire-format encoder (pure functions). A :class:`~kommo_sandbox.changes.Change` carries the API v4
  representation of an entity; Kommo's webhooks speak the legacy v2 dialect (``date_create``,
  ``last_modified``, ``modified_user_id``, ``custom_fields[i][values][j][enum]``, every value a string),
  form-encoded with PHP bracket keys. The field order follows the real captures in ``shared/kommo/samples``.
* :class:`WebhookSender`: subscribes to the store's change bus, decides who gets what from the account's
  subscriptions and the stages' Digital Pipeline hooks, and delivers on background threads with Kommo's
  timeout, retry ladder, disable rule and Digital Pipeline retry policy.

Decisions where the sources are silent or disagree (see ``shared/kommo/API.md`` §12):

* A lead status change is published as ``status``. A subscription with ``status_lead`` gets ``leads[status]``;
  one with ``update_lead`` also gets ``leads[update]`` for it (the documentation's ``leads[update]``
  example is a stage move: it carries ``old_status_id``). A subscription with both gets two deliveries.
  A change of the responsible user is treated alike (``leads[responsible]`` + ``leads[update]``).
* ``old_status_id`` is the status the lead had before its last stage move, as Kommo keeps it: the
  documentation's ``leads[responsible]`` example repeats the ``old_status_id`` of the earlier
  ``leads[status]`` example for the same lead. The sender remembers each lead's last move for that.
* ``old_pipeline_id`` is added after ``pipeline_id`` only when the pipeline changed (the captures of moves
  within one pipeline never carry it).
* Contacts, companies and tasks have no ``[responsible]`` section on the wire: a change of their responsible
  user is sent as ``contacts[update]`` / ``task[update]`` to ``update_*`` and ``responsible_*`` subscribers.
* Catalog element hooks answer to ``add_catalog``, ``update_catalog`` and ``delete_catalog`` (Kommo's codes
  for them are not documented).
* Task dates (``date_create``, ``last_modified``, ``complete_till``) are rendered in UTC and note dates
  (``date_create``, ``timestamp_x``) in Moscow time (UTC+3): that is what the documentation's examples show
  against their unix timestamps.
* Keys and values are encoded like PHP's ``http_build_query`` (Kommo's stack): ``+`` for spaces, everything
  but letters, digits and ``-_.`` percent-encoded (so ``~`` becomes ``%7E``).
* No HTTP answer (timeout, refused connection) counts as code 0 for the retry ladder.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal
from urllib.parse import quote_plus, urlsplit

from kommo_sandbox.changes import Change, WebhookSource

Pair = tuple[str, str]
AccountPosition = Literal["first", "last"]

USER_AGENT = "amoCRM-Webhooks/3.0"
DELIVERY_TIMEOUT = 2.0  # seconds: Kommo's limit for an answer

# After a failed attempt n (index n - 1): the delay before attempt n + 1, and whether the code allows it.
GENERAL_RETRY_LADDER: tuple[tuple[float, Callable[[int], bool]], ...] = (
    (5 * 60, lambda code: True),
    (15 * 60, lambda code: True),
    (15 * 60, lambda code: code == 499 or 500 <= code <= 599),
    (60 * 60, lambda code: code == 499 or 500 <= code <= 599),
)

TASK_DATES_TZ = UTC
NOTE_DATES_TZ = timezone(timedelta(hours=3))

_SECTION = {
    "lead": "leads",
    "contact": "contacts",
    "company": "contacts",
    "task": "task",
    "catalog_element": "catalogs",
}
_ELEMENT_TYPE = {"contacts": "1", "leads": "2", "companies": "3", "customers": "12"}
_ELEMENT_TYPE_OF_ENTITY = {"contact": "1", "lead": "2", "company": "3"}
_NOTE_TYPE = {
    "common": "4",
    "attachment": "5",
    "call_in": "10",
    "call_out": "11",
    "service_message": "25",
    "sms_in": "102",
    "sms_out": "103",
}
_DATE_FIELD_TYPES = frozenset({"date", "date_time"})


# --- routing: which change goes to which subscription, under which section ------------------------------


@dataclass(frozen=True)
class Route:
    """One wire section a change produces, and the settings codes that subscribe to it."""

    action: str  # the wire action: add, update, status, ...
    codes: frozenset[str]


def routes_for(change: Change) -> list[Route]:
    """The sections ``change`` is sent under, each with the subscription codes that receive it."""
    entity, action = change.entity, change.action
    if action == "mail_in":  # Digital Pipeline only
        return []
    if entity == "lead":
        if action in ("status", "responsible"):
            return [Route(action, frozenset({f"{action}_lead"})), Route("update", frozenset({"update_lead"}))]
        return [Route(action, frozenset({f"{action}_lead"}))]
    if entity in ("contact", "company"):
        if action == "responsible":
            return [Route("update", frozenset({f"update_{entity}", f"responsible_{entity}"}))]
        return [Route(action, frozenset({f"{action}_{entity}"}))]
    if entity == "task" and action in ("add", "update", "delete", "responsible"):
        if action == "responsible":
            return [Route("update", frozenset({"update_task", "responsible_task"}))]
        return [Route(action, frozenset({f"{action}_task"}))]
    if entity == "catalog_element" and action in ("add", "update", "delete"):
        return [Route(action, frozenset({f"{action}_catalog"}))]
    return []


def section_key(change: Change, action: str) -> str:
    """``leads[status]``, ``contacts[add]`` (companies too), ``task[update]``, ``catalogs[delete]``."""
    return f"{_SECTION[change.entity]}[{action}]"


# --- values ---------------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A value as Kommo writes it on the wire: always a string; booleans as "1"/"0", no value as ""."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _timestamp(value: Any) -> int:
    """Unix seconds from a v4 date value: an int, a digit string or an RFC 3339 string."""
    if isinstance(value, int | float):
        return int(value)
    text = str(value)
    if text.lstrip("-").isdigit():
        return int(text)
    return int(datetime.fromisoformat(text).timestamp())


def _datetime_text(value: Any, tz: timezone) -> str:
    """A unix timestamp as Kommo's ``Y-m-d H:i:s`` string."""
    return datetime.fromtimestamp(_timestamp(value), tz).strftime("%Y-%m-%d %H:%M:%S")


def _flatten(prefix: str, value: Any) -> list[Pair]:
    """Nested dicts and lists as bracket keys under ``prefix``; scalars as one pair."""
    if isinstance(value, Mapping):
        return [pair for k, v in value.items() for pair in _flatten(f"{prefix}[{k}]", v)]
    if isinstance(value, list):
        return [pair for i, v in enumerate(value) for pair in _flatten(f"{prefix}[{i}]", v)]
    return [(prefix, _text(value))]


def custom_fields_pairs(values: Sequence[Mapping[str, Any]] | None) -> list[Pair]:
    """``[custom_fields][i][...]`` pairs from v4 ``custom_fields_values`` (read shape, with ``field_type``).

    Date and date-time values come as a bare unix timestamp (``[values][0]=1615845600``, no ``[value]`` key);
    birthdays as ``dd.mm.YYYY``; checkboxes as "1"/"0"; a value with an enum (select, radiobutton,
    multiselect, multitext, ...) carries its label in ``[value]`` and the enum id in ``[enum]``; a field
    with a code (PHONE, EMAIL, POSITION, SKU, ...) ends with ``[code]``.
    """
    pairs: list[Pair] = []
    for i, cf in enumerate(values or []):
        prefix = f"[custom_fields][{i}]"
        pairs += [(f"{prefix}[id]", _text(cf["field_id"])), (f"{prefix}[name]", _text(cf.get("field_name")))]
        field_type = cf.get("field_type")
        for j, item in enumerate(cf.get("values") or []):
            value_prefix = f"{prefix}[values][{j}]"
            value = item.get("value")
            if field_type in _DATE_FIELD_TYPES:
                pairs.append((value_prefix, _text(_timestamp(value))))
                continue
            if field_type == "birthday":
                value = datetime.fromtimestamp(_timestamp(value), UTC).strftime("%d.%m.%Y")
            pairs += _flatten(f"{value_prefix}[value]", value)
            if item.get("enum_id") is not None:
                pairs.append((f"{value_prefix}[enum]", _text(item["enum_id"])))
        if cf.get("field_code"):
            pairs.append((f"{prefix}[code]", _text(cf["field_code"])))
    return pairs


def _embedded(entity: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    return list((entity.get("_embedded") or {}).get(name) or [])


def _tags_pairs(entity: Mapping[str, Any]) -> list[Pair]:
    pairs: list[Pair] = []
    for i, tag in enumerate(_embedded(entity, "tags")):
        pairs += [(f"[tags][{i}][id]", _text(tag["id"])), (f"[tags][{i}][name]", _text(tag.get("name")))]
    return pairs


# --- items: one entity's fields under ``SECTION[ACTION][i]`` --------------------------------------------


def lead_fields(
    change: Change, action: str, *, old_status_id: int | None = None, old_pipeline_id: int | None = None
) -> list[Pair]:
    """A lead in Kommo's v2 dialect, keys relative to ``leads[ACTION][i]``.

    ``old_status_id`` / ``old_pipeline_id`` are added when given (see the module notes on when).
    """
    lead = change.current or change.previous or {}
    if action == "delete":
        return [
            ("[id]", _text(lead.get("id", change.entity_id))),
            ("[status_id]", _text(lead.get("status_id"))),
            ("[pipeline_id]", _text(lead.get("pipeline_id"))),
        ]
    pairs: list[Pair] = [
        ("[id]", _text(lead.get("id", change.entity_id))),
        ("[name]", _text(lead.get("name"))),
    ]
    pairs.append(("[status_id]", _text(lead.get("status_id"))))
    if old_status_id is not None:
        pairs.append(("[old_status_id]", _text(old_status_id)))
    pairs += [
        ("[price]", _text(lead.get("price"))),
        ("[responsible_user_id]", _text(lead.get("responsible_user_id"))),
        ("[last_modified]", _text(lead.get("updated_at"))),
        ("[modified_user_id]", _text(lead.get("updated_by", change.user_id))),
        ("[created_user_id]", _text(lead.get("created_by"))),
        ("[date_create]", _text(lead.get("created_at"))),
        ("[pipeline_id]", _text(lead.get("pipeline_id"))),
    ]
    if old_pipeline_id is not None:
        pairs.append(("[old_pipeline_id]", _text(old_pipeline_id)))
    pairs += _tags_pairs(lead)
    pairs.append(("[account_id]", _text(lead.get("account_id", change.account_id))))
    pairs += custom_fields_pairs(lead.get("custom_fields_values"))
    if action == "responsible" and change.previous is not None:
        pairs.append(("[old_responsible_user_id]", _text(change.previous.get("responsible_user_id"))))
    pairs += [
        ("[created_at]", _text(lead.get("created_at"))),
        ("[updated_at]", _text(lead.get("updated_at"))),
    ]
    return pairs


def contact_fields(change: Change, action: str) -> list[Pair]:
    """A contact or a company (``type=contact|company``), keys relative to ``contacts[ACTION][i]``."""
    entity = change.current or change.previous or {}
    kind = "company" if change.entity == "company" else "contact"
    entity_id = _text(entity.get("id", change.entity_id))
    if action == "delete":
        return [("[id]", entity_id), ("[type]", kind)]
    pairs: list[Pair] = [
        ("[id]", entity_id),
        ("[name]", _text(entity.get("name"))),
        ("[responsible_user_id]", _text(entity.get("responsible_user_id"))),
        ("[date_create]", _text(entity.get("created_at"))),
        ("[last_modified]", _text(entity.get("updated_at"))),
        ("[created_user_id]", _text(entity.get("created_by"))),
        ("[modified_user_id]", _text(entity.get("updated_by", change.user_id))),
    ]
    companies = _embedded(entity, "companies") if kind == "contact" else []
    if companies:
        if "name" in companies[0]:
            pairs.append(("[company_name]", _text(companies[0]["name"])))
        pairs.append(("[linked_company_id]", _text(companies[0]["id"])))
    pairs.append(("[account_id]", _text(entity.get("account_id", change.account_id))))
    pairs += custom_fields_pairs(entity.get("custom_fields_values"))
    pairs += _tags_pairs(entity)
    for lead in _embedded(entity, "leads"):
        pairs.append((f"[linked_leads_id][{lead['id']}][ID]", _text(lead["id"])))
    pairs += [
        ("[created_at]", _text(entity.get("created_at"))),
        ("[updated_at]", _text(entity.get("updated_at"))),
        ("[type]", kind),
    ]
    return pairs


def task_fields(change: Change, action: str) -> list[Pair]:
    """A task, keys relative to ``task[ACTION][i]`` (the section is singular on the wire)."""
    task = change.current or change.previous or {}
    task_id = _text(task.get("id", change.entity_id))
    if action == "delete":
        return [("[id]", task_id)]
    previous = change.previous or {}
    pairs: list[Pair] = [
        ("[id]", task_id),
        ("[element_id]", _text(task.get("entity_id") or 0)),
        ("[element_type]", _ELEMENT_TYPE.get(task.get("entity_type") or "", "0")),
        ("[task_type]", _text(task.get("task_type_id"))),
        ("[date_create]", _datetime_text(task["created_at"], TASK_DATES_TZ)),
        ("[text]", _text(task.get("text"))),
        ("[status]", _text(bool(task.get("is_completed")))),
        ("[account_id]", _text(task.get("account_id", change.account_id))),
        ("[created_user_id]", _text(task.get("created_by"))),
        ("[last_modified]", _datetime_text(task["updated_at"], TASK_DATES_TZ)),
        ("[responsible_user_id]", _text(task.get("responsible_user_id"))),
        ("[complete_till]", _datetime_text(task["complete_till"], TASK_DATES_TZ)),
    ]
    if action == "update":
        if task.get("is_completed") and not previous.get("is_completed"):
            pairs.append(("[action_close]", "1"))
        pairs.append(("[old_text]", _text(previous.get("text", task.get("text")))))
    pairs += [
        ("[created_at]", _text(task.get("created_at"))),
        ("[updated_at]", _text(task.get("updated_at"))),
        ("[complete_before]", _text(_timestamp(task["complete_till"]))),
    ]
    return pairs


def catalog_element_fields(change: Change, action: str) -> list[Pair]:
    """A catalog (list) element, keys relative to ``catalogs[ACTION][i]``, ``type=catalog``."""
    element = change.current or change.previous or {}
    element_id = _text(element.get("id", change.entity_id))
    if action == "delete":
        return [
            ("[id]", element_id),
            ("[catalog_id]", _text(element.get("catalog_id"))),
            ("[type]", "catalog"),
        ]
    return [
        ("[id]", element_id),
        ("[date_create]", _text(element.get("created_at"))),
        ("[date_modify]", _text(element.get("updated_at"))),
        ("[created_by]", _text(element.get("created_by"))),
        ("[modified_by]", _text(element.get("updated_by", change.user_id))),
        ("[catalog_id]", _text(element.get("catalog_id"))),
        ("[name]", _text(element.get("name"))),
        ("[deleted]", _text(bool(element.get("is_deleted")))),
        *custom_fields_pairs(element.get("custom_fields_values")),
        ("[created_at]", _text(element.get("created_at"))),
        ("[updated_at]", _text(element.get("updated_at"))),
        ("[type]", "catalog"),
    ]


def note_fields(change: Change) -> list[Pair]:
    """A note added to a lead, contact or company, keys relative to ``SECTION[note][i]``.

    The ``metadata`` JSON names the author by id only: the change does not carry the user's name.
    """
    note = change.current
    note_type = _text(note.get("note_type"))
    element_type = _ELEMENT_TYPE.get(note.get("entity_type") or "", _ELEMENT_TYPE_OF_ENTITY[change.entity])
    metadata = {"event_source": {"id": note.get("created_by", change.user_id), "type": 1}}
    params = note.get("params") or {}
    return [
        ("[note][text]", _text(params.get("text"))),
        ("[note][attachement]", _text(params.get("original_name"))),
        ("[note][date_create]", _datetime_text(note["created_at"], NOTE_DATES_TZ)),
        ("[note][note_type]", _NOTE_TYPE.get(note_type, note_type)),
        ("[note][element_type]", element_type),
        ("[note][element_id]", _text(note.get("entity_id", change.entity_id))),
        ("[note][catalog_id]", "0"),
        ("[note][group_id]", _text(note.get("group_id") or 0)),
        ("[note][timestamp_x]", _datetime_text(note["updated_at"], NOTE_DATES_TZ)),
        ("[note][account_id]", _text(note.get("account_id", change.account_id))),
        ("[note][metadata]", json.dumps(metadata, separators=(",", ":"))),
        ("[note][created_by]", _text(note.get("created_by"))),
        ("[note][modified_by]", _text(note.get("updated_by"))),
        ("[note][main_user_id]", _text(note.get("responsible_user_id"))),
        ("[note][id]", _text(note.get("id"))),
        ("[note][created_at]", _text(note.get("created_at"))),
        ("[note][updated_at]", _text(note.get("updated_at"))),
    ]


def item_fields(
    change: Change, action: str, *, old_status_id: int | None = None, old_pipeline_id: int | None = None
) -> list[Pair]:
    """The fields of ``change`` sent under wire action ``action`` (see :func:`routes_for`)."""
    if action == "note":
        return note_fields(change)
    if change.entity == "lead":
        return lead_fields(change, action, old_status_id=old_status_id, old_pipeline_id=old_pipeline_id)
    if change.entity in ("contact", "company"):
        return contact_fields(change, action)
    if change.entity == "task":
        return task_fields(change, action)
    if change.entity == "catalog_element":
        return catalog_element_fields(change, action)
    raise ValueError(f"no webhook format for {change.entity!r}")


@dataclass(frozen=True)
class Item:
    """One entity in a body: its section (``leads[status]``) and its fields relative to ``SECTION[i]``."""

    section: str
    fields: tuple[Pair, ...]


# --- bodies ---------------------------------------------------------------------------------------------


def account_pairs(account: Mapping[str, Any]) -> list[Pair]:
    """The general webhook's ``account`` block."""
    return [
        ("account[subdomain]", _text(account["subdomain"])),
        ("account[id]", _text(account["id"])),
        ("account[_links][self]", _text(account["self"])),
    ]


def dp_account_pairs(account: Mapping[str, Any]) -> list[Pair]:
    """The Digital Pipeline hook's ``account`` block: id first, no ``_links``."""
    return [("account[id]", _text(account["id"])), ("account[subdomain]", _text(account["subdomain"]))]


def body_pairs(
    items: Iterable[Item], account: Sequence[Pair], *, account_position: AccountPosition
) -> list[Pair]:
    """Full keys for ``items`` (numbered from 0 within each section) plus the account block."""
    counters: dict[str, int] = {}
    pairs: list[Pair] = []
    for item in items:
        index = counters.get(item.section, 0)
        counters[item.section] = index + 1
        pairs += [(f"{item.section}[{index}]{key}", value) for key, value in item.fields]
    return [*account, *pairs] if account_position == "first" else [*pairs, *account]


def php_urlencode(text: str) -> str:
    """PHP's ``urlencode``: ``+`` for spaces; letters, digits and ``-_.`` kept; the rest as UTF-8 %XX."""
    return quote_plus(text, safe="").replace("~", "%7E")


def form_encode(pairs: Iterable[Pair]) -> str:
    """The ``application/x-www-form-urlencoded`` body, keys and values encoded, in the given order."""
    return "&".join(f"{php_urlencode(key)}={php_urlencode(value)}" for key, value in pairs)


def webhook_pairs(
    change: Change,
    action: str,
    account: Mapping[str, Any],
    *,
    account_position: AccountPosition = "first",
    old_status_id: int | None = None,
    old_pipeline_id: int | None = None,
) -> list[Pair]:
    """The decoded body of a general webhook carrying ``change`` alone under wire action ``action``."""
    fields = item_fields(change, action, old_status_id=old_status_id, old_pipeline_id=old_pipeline_id)
    item = Item(section_key(change, action), tuple(fields))
    return body_pairs([item], account_pairs(account), account_position=account_position)


def dp_item(change: Change) -> Item:
    """The Digital Pipeline item: ``leads[status]`` with the move, ``leads[add]`` for a lead created there,
    ``leads[mail_in]`` for an incoming e-mail (the lead's ids only, as the documentation's example)."""
    lead = change.current
    ids = [
        ("[id]", _text(lead.get("id", change.entity_id))),
        ("[status_id]", _text(lead.get("status_id"))),
        ("[pipeline_id]", _text(lead.get("pipeline_id"))),
    ]
    if change.action in ("add", "mail_in"):
        return Item(f"leads[{change.action}]", tuple(ids))
    previous = change.previous or {}
    moved_from = [
        ("[old_status_id]", _text(previous.get("status_id"))),
        ("[old_pipeline_id]", _text(previous.get("pipeline_id"))),
    ]
    return Item("leads[status]", (*ids, *moved_from))


def dp_pairs(change: Change, account: Mapping[str, Any]) -> list[Pair]:
    """The decoded Digital Pipeline body: the lead's ids, then ``account[id]``, ``account[subdomain]``."""
    return body_pairs([dp_item(change)], dp_account_pairs(account), account_position="last")


def triggers_dp(change: Change) -> bool:
    """Whether Digital Pipeline hooks fire on ``change``: a stage move, a lead created in a stage, an
    incoming e-mail on a lead (to the hooks of its stage that listen for ``mail_in``)."""
    return change.entity == "lead" and change.action in ("status", "add", "mail_in")


# --- delivery -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DpPolicy:
    """Retries of Digital Pipeline hooks (current docs: up to 4 retries within an hour; more than 100 invalid
    answers from an address within 5 minutes suspend retries to it for 5 minutes). The delays between retries
    are not documented; the default spreads 4 retries over 51 minutes. ``retry_delays=()`` gives the older
    "sent once, no retries" behaviour."""

    retry_delays: tuple[float, ...] = (60, 5 * 60, 15 * 60, 30 * 60)
    suspend_after: int = 100
    suspend_window: float = 5 * 60
    suspend_for: float = 5 * 60


@dataclass
class _Delivery:
    id: str
    kind: Literal["webhook", "digital_pipeline"]
    account_id: int
    destination: str
    items: list[Item]
    account: list[Pair]
    account_position: AccountPosition
    attempt: int = 0

    def pairs(self) -> list[Pair]:
        return body_pairs(self.items, self.account, account_position=self.account_position)


@dataclass
class _Lane:
    """Deliveries waiting for one destination, sent in order, one at a time."""

    jobs: deque[_Delivery] = field(default_factory=deque)
    busy: bool = False


@dataclass
class _Outcome:
    status_code: int | None
    error: str | None
    duration: float

    @property
    def valid(self) -> bool:
        return self.status_code is not None and 100 <= self.status_code <= 299

    @property
    def ladder_code(self) -> int:
        return self.status_code if self.status_code is not None else 0


class WebhookSender:
    """Turns published changes into Kommo webhook deliveries on background threads.

    ``enqueue`` only appends to a bounded queue. A coordinator thread plans deliveries (subscriptions, account
    block, Digital Pipeline destinations) and releases scheduled retries; ``workers`` threads post. Deliveries
    to one destination go out in order, one at a time; different destinations are served in parallel, so a
    slow receiver holds up only its own deliveries.

    ``time_scale`` multiplies Kommo's durations (retry delays, counting windows, suspensions), never the HTTP
    ``timeout``. ``items_per_body`` > 1 lets waiting first attempts to one destination share a body
    (``[0]``, ``[1]``, ...); ``batch_window`` seconds is how long the coordinator gathers changes first.
    """

    def __init__(
        self,
        source: WebhookSource,
        *,
        workers: int = 4,
        queue_size: int = 10_000,
        timeout: float = DELIVERY_TIMEOUT,
        time_scale: float = 1.0,
        account_position: AccountPosition = "first",
        items_per_body: int = 1,
        batch_window: float = 0.0,
        disable_after: int = 100,
        disable_window: float = 2 * 60 * 60,
        dp_policy: DpPolicy | None = None,
        log_size: int = 1000,
    ) -> None:
        self.source = source
        self.timeout = timeout
        self.time_scale = time_scale
        self.account_position = account_position
        self.items_per_body = items_per_body
        self.batch_window = batch_window
        self.disable_after = disable_after
        self.disable_window = disable_window
        self.dp_policy = dp_policy or DpPolicy()
        self._queue_size = queue_size
        self._lock = threading.Lock()
        self._coordinator_wakeup = threading.Condition(self._lock)
        self._work_ready = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._intake: deque[Change] = deque()
        self._timers: list[tuple[float, int, _Delivery]] = []
        self._timer_seq = itertools.count()
        self._lanes: dict[str, _Lane] = {}
        self._ready: deque[str] = deque()
        self._pending = 0  # changes not yet planned + deliveries not yet finished
        self._stopping = False
        self._log: deque[dict[str, Any]] = deque(maxlen=log_size)
        self._invalid: dict[tuple[int, str], deque[float]] = {}
        self._dp_invalid: dict[str, deque[float]] = {}
        self._dp_suspended_until: dict[str, float] = {}
        self._last_move: dict[tuple[int, int], int] = {}  # (account, lead) -> status before the last move
        self._threads = [threading.Thread(target=self._coordinate, name="webhooks-coordinator", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, name=f"webhooks-worker-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    # -- public -------------------------------------------------------------------------------------------

    def enqueue(self, change: Change) -> None:
        """Accept a change from the bus; returns at once. A full queue drops the change (logged)."""
        with self._lock:
            if self._stopping:
                return
            if len(self._intake) >= self._queue_size:
                self._record_locked(
                    account_id=change.account_id,
                    outcome="overflow",
                    error="webhook queue is full",
                    change=change,
                )
                return
            self._intake.append(change)
            self._pending += 1
            self._coordinator_wakeup.notify()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the threads; deliveries not yet sent (and scheduled retries) are abandoned."""
        with self._lock:
            self._stopping = True
            self._coordinator_wakeup.notify_all()
            self._work_ready.notify_all()
            self._idle.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def deliveries(self, account_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent log entries (oldest first), one per attempt or drop, optionally for one account."""
        with self._lock:
            entries = [e for e in self._log if account_id is None or e["account_id"] == account_id]
        return [dict(e) for e in entries[-limit:]] if limit > 0 else []

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued, in flight or scheduled for retry; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return not self._pending

    # -- planning (coordinator thread) --------------------------------------------------------------------

    def _coordinate(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and not self._intake and not self._due_timer_locked():
                    wait = self._timers[0][0] - time.monotonic() if self._timers else None
                    self._coordinator_wakeup.wait(wait)
                if self._stopping:
                    return
                self._release_due_timers_locked()
                if not self._intake:
                    continue
                if self.items_per_body > 1:
                    gather_until = time.monotonic() + self.batch_window
                    while not self._stopping and (remaining := gather_until - time.monotonic()) > 0:
                        self._coordinator_wakeup.wait(remaining)
                changes = list(self._intake)
                self._intake.clear()
            planned = [self._plan_safely(change) for change in changes]
            with self._lock:
                self._pending -= len(changes)
                for deliveries in planned:
                    self._pending += len(deliveries)
                    for delivery in deliveries:
                        self._push_locked(delivery)
                self._notify_if_idle_locked()

    def _plan_safely(self, change: Change) -> list[_Delivery]:
        try:
            return self._plan(change)
        except Exception as exc:  # a broken change or source must not stop the sender
            with self._lock:
                self._record_locked(
                    account_id=change.account_id,
                    outcome="error",
                    error=f"planning failed: {exc!r}",
                    change=change,
                )
            return []

    def _plan(self, change: Change) -> list[_Delivery]:
        routes = routes_for(change)
        dp_destinations = self._dp_destinations(change)
        if not routes and not dp_destinations:
            return []
        account = self.source.account_block(change.account_id)
        old_status_id, old_pipeline_id = self._lead_history(change)
        deliveries: list[_Delivery] = []
        subscriptions = sorted(self.source.webhook_subscriptions(change.account_id), key=lambda s: s.sort)
        for subscription in subscriptions:
            if subscription.disabled:
                continue
            for route in routes:
                if not route.codes & set(subscription.settings):
                    continue
                fields = item_fields(
                    change, route.action, old_status_id=old_status_id, old_pipeline_id=old_pipeline_id
                )
                item = Item(section_key(change, route.action), tuple(fields))
                deliveries.append(
                    self._new_delivery(
                        "webhook", change.account_id, subscription.destination, [item], account
                    )
                )
        for destination in dp_destinations:
            deliveries.append(
                self._new_delivery(
                    "digital_pipeline", change.account_id, destination, [dp_item(change)], account
                )
            )
        return deliveries

    def _dp_destinations(self, change: Change) -> list[str]:
        if not triggers_dp(change):
            return []
        lead = change.current
        pipeline_id, status_id = int(lead["pipeline_id"]), int(lead["status_id"])
        if change.action == "mail_in":
            return self.source.dp_destinations(change.account_id, pipeline_id, status_id, "mail_in")
        return self.source.dp_destinations(change.account_id, pipeline_id, status_id)

    def _lead_history(self, change: Change) -> tuple[int | None, int | None]:
        """``old_status_id`` and ``old_pipeline_id`` for a lead change (see the module notes)."""
        if change.entity != "lead" or change.action in ("add", "delete", "note", "mail_in"):
            return None, None
        previous = change.previous or {}
        current = change.current
        key = (change.account_id, change.entity_id)
        moved = "status_id" in previous and previous["status_id"] != current.get("status_id")
        if moved:
            self._last_move[key] = int(previous["status_id"])
        old_pipeline_id = None
        if "pipeline_id" in previous and previous["pipeline_id"] != current.get("pipeline_id"):
            old_pipeline_id = int(previous["pipeline_id"])
        return self._last_move.get(key), old_pipeline_id

    def _new_delivery(
        self,
        kind: Literal["webhook", "digital_pipeline"],
        account_id: int,
        destination: str,
        items: list[Item],
        account: Mapping[str, Any],
    ) -> _Delivery:
        if kind == "webhook":
            block, position = account_pairs(account), self.account_position
        else:
            block, position = dp_account_pairs(account), "last"
        return _Delivery(uuid.uuid4().hex, kind, account_id, destination, items, block, position)

    # -- queues -------------------------------------------------------------------------------------------

    def _push_locked(self, delivery: _Delivery) -> None:
        lane = self._lanes.setdefault(delivery.destination, _Lane())
        lane.jobs.append(delivery)
        if not lane.busy and delivery.destination not in self._ready:
            self._ready.append(delivery.destination)
            self._work_ready.notify()

    def _due_timer_locked(self) -> bool:
        return bool(self._timers) and self._timers[0][0] <= time.monotonic()

    def _release_due_timers_locked(self) -> None:
        while self._due_timer_locked():
            _, _, delivery = heapq.heappop(self._timers)
            self._push_locked(delivery)

    def _schedule_locked(self, delivery: _Delivery, delay: float) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._timer_seq), delivery))
        self._coordinator_wakeup.notify()

    def _take_locked(self, destination: str) -> _Delivery:
        """The next delivery for ``destination``, merged with those waiting behind it when batching is on."""
        lane = self._lanes[destination]
        delivery = lane.jobs.popleft()
        while (
            delivery.kind == "webhook"
            and delivery.attempt == 0
            and len(delivery.items) < self.items_per_body
            and lane.jobs
            and lane.jobs[0].kind == "webhook"
            and lane.jobs[0].attempt == 0
            and lane.jobs[0].account == delivery.account
        ):
            delivery.items += lane.jobs.popleft().items
            self._pending -= 1
        return delivery

    def _notify_if_idle_locked(self) -> None:
        if not self._pending:
            self._idle.notify_all()

    # -- sending (worker threads) -------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and not self._ready:
                    self._work_ready.wait()
                if self._stopping:
                    return
                destination = self._ready.popleft()
                self._lanes[destination].busy = True
                delivery = self._take_locked(destination)
            try:
                retry_in = self._attempt(delivery)
            except Exception as exc:  # a receiver or source failure must not kill the worker
                retry_in = None
                with self._lock:
                    self._record_locked(
                        account_id=delivery.account_id, outcome="error", error=repr(exc), delivery=delivery
                    )
            with self._lock:
                if retry_in is None:
                    self._pending -= 1
                else:
                    self._schedule_locked(delivery, retry_in)
                lane = self._lanes[destination]
                lane.busy = False
                if lane.jobs:
                    self._ready.append(destination)
                    self._work_ready.notify()
                else:
                    del self._lanes[destination]
                self._notify_if_idle_locked()

    def _attempt(self, delivery: _Delivery) -> float | None:
        """Send one attempt; the delay before the next one, or None when the delivery is finished."""
        if delivery.attempt == 0 and self.source.should_drop_webhook(delivery.account_id):
            with self._lock:
                self._record_locked(account_id=delivery.account_id, outcome="dropped", delivery=delivery)
            return None
        if delivery.kind == "webhook" and not self._subscription_active(delivery):
            with self._lock:
                self._record_locked(
                    account_id=delivery.account_id,
                    outcome="skipped",
                    error="subscription disabled or removed",
                    delivery=delivery,
                )
            return None
        delivery.attempt += 1
        body = form_encode(delivery.pairs())
        request_id = str(uuid.uuid4())
        outcome = self._post(delivery.destination, body.encode(), request_id)
        now = time.monotonic()
        disable = not outcome.valid and delivery.kind == "webhook" and self._count_invalid(delivery, now)
        with self._lock:
            retry_in = None if outcome.valid or disable else self._next_delay_locked(delivery, outcome, now)
            self._record_locked(
                account_id=delivery.account_id,
                outcome="delivered" if outcome.valid else "failed",
                delivery=delivery,
                body=body,
                request_id=request_id,
                result=outcome,
                retry_in=retry_in,
            )
        if disable:
            self.source.webhook_set_disabled(delivery.account_id, delivery.destination, True)
            with self._lock:
                self._record_locked(
                    account_id=delivery.account_id,
                    outcome="disabled",
                    error=f"more than {self.disable_after} invalid responses",
                    delivery=delivery,
                )
        return retry_in

    def _subscription_active(self, delivery: _Delivery) -> bool:
        subscriptions = self.source.webhook_subscriptions(delivery.account_id)
        return any(s.destination == delivery.destination and not s.disabled for s in subscriptions)

    def _next_delay_locked(self, delivery: _Delivery, outcome: _Outcome, now: float) -> float | None:
        if delivery.kind == "webhook":
            if delivery.attempt > len(GENERAL_RETRY_LADDER):
                return None
            delay, allowed = GENERAL_RETRY_LADDER[delivery.attempt - 1]
            return delay * self.time_scale if allowed(outcome.ladder_code) else None
        policy = self.dp_policy
        invalid = self._dp_invalid.setdefault(delivery.destination, deque())
        invalid.append(now)
        while invalid and invalid[0] < now - policy.suspend_window * self.time_scale:
            invalid.popleft()
        if len(invalid) > policy.suspend_after:
            self._dp_suspended_until[delivery.destination] = now + policy.suspend_for * self.time_scale
            invalid.clear()
        if delivery.attempt > len(policy.retry_delays):
            return None
        delay = policy.retry_delays[delivery.attempt - 1] * self.time_scale
        suspended_until = self._dp_suspended_until.get(delivery.destination, 0.0)
        return max(delay, suspended_until - now)

    def _count_invalid(self, delivery: _Delivery, now: float) -> bool:
        """Count an invalid answer; True when the subscription must be disabled (more than ``disable_after``
        invalid answers within ``disable_window``, the latest one being invalid)."""
        with self._lock:
            invalid = self._invalid.setdefault((delivery.account_id, delivery.destination), deque())
            invalid.append(now)
            while invalid and invalid[0] < now - self.disable_window * self.time_scale:
                invalid.popleft()
            if len(invalid) <= self.disable_after:
                return False
            invalid.clear()
            return True

    def _post(self, destination: str, body: bytes, request_id: str) -> _Outcome:
        started = time.monotonic()
        url = urlsplit(destination)
        if url.scheme not in ("http", "https") or not url.hostname:
            return _Outcome(None, f"unsupported destination {destination!r}", 0.0)
        connection_class = (
            http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_class(url.hostname, url.port, timeout=self.timeout)
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": USER_AGENT,
            "X-Amocrm-Requestid": request_id,
            "Accept-Encoding": "gzip",
        }
        try:
            connection.request("POST", path, body=body, headers=headers)
            if connection.sock is not None:
                connection.sock.settimeout(max(0.001, self.timeout - (time.monotonic() - started)))
            response = connection.getresponse()
            response.read()
            status: int | None = response.status
            error = None
        except TimeoutError:
            status, error = None, f"no response within {self.timeout:g} s"
        except (OSError, http.client.HTTPException) as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"
        finally:
            connection.close()
        duration = time.monotonic() - started
        if status is not None and duration > self.timeout:
            status, error = None, f"no response within {self.timeout:g} s"
        return _Outcome(status, error, duration)

    # -- log ----------------------------------------------------------------------------------------------

    def _record_locked(
        self,
        *,
        account_id: int,
        outcome: str,
        error: str | None = None,
        change: Change | None = None,
        delivery: _Delivery | None = None,
        body: str | None = None,
        request_id: str | None = None,
        result: _Outcome | None = None,
        retry_in: float | None = None,
    ) -> None:
        entry: dict[str, Any] = {
            "at": time.time(),
            "account_id": account_id,
            "outcome": outcome,
            "kind": delivery.kind if delivery else None,
            "delivery_id": delivery.id if delivery else None,
            "destination": delivery.destination if delivery else None,
            "sections": sorted({item.section for item in delivery.items}) if delivery else [],
            "keys": [key for key, _ in delivery.pairs()] if delivery else [],
            "body": body,
            "request_id": request_id,
            "attempt": delivery.attempt if delivery else 0,
            "status_code": result.status_code if result else None,
            "error": result.error if result else error,
            "duration_ms": round(result.duration * 1000, 1) if result else None,
            "retry_in": retry_in,
            "change": f"{change.entity}:{change.action}:{change.entity_id}" if change else None,
        }
        self._log.append(entry)
