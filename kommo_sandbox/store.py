"""The sandbox's in-memory store: accounts and everything in them, behind one re-entrant lock.

The store implements :class:`~kommo_sandbox.changes.WebhookSource` and owns the
:class:`~kommo_sandbox.changes.ChangeBus`. Mutations live in :mod:`kommo_sandbox.services`; they
take :attr:`SandboxStore.lock`, change records, call :meth:`SandboxStore.record_event` and
:meth:`SandboxStore.publish`. Seeding writes records directly and publishes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kommo_sandbox.auth import AuthRegistry
from kommo_sandbox.changes import Action, Change, ChangeBus, Entity, Subscription
from kommo_sandbox.entities import (
    Catalog,
    CatalogElement,
    Company,
    Contact,
    CustomField,
    Enum,
    Event,
    Group,
    Lead,
    LossReason,
    Note,
    Pipeline,
    Role,
    Status,
    Tag,
    Task,
    TaskType,
    User,
    WebhookRecord,
)
from kommo_sandbox.faults import FaultRegistry

LinkKey = tuple[str, int]  # ("leads" | "contacts" | "companies" | "catalog_elements", id)
# What a stage's Digital Pipeline "Send webhook" may listen for (API.md §12.3). The sandbox sends
# ``status`` (a move into the stage, a lead created there) and ``mail_in`` (an incoming e-mail on a lead).
DP_TRIGGERS = ("status", "mail_in")


def dp_key(pipeline_id: int, status_id: int, trigger: str = "status") -> str:
    """The key of a stage's Digital Pipeline URLs in ``Account.dp_destinations``: ``"pipeline:status"`` for
    ``status`` (as before there were other triggers), ``"pipeline:status:trigger"`` otherwise."""
    return f"{pipeline_id}:{status_id}" if trigger == "status" else f"{pipeline_id}:{status_id}:{trigger}"


# First id of each kind, so ids look like Kommo's and never collide between kinds.
ID_STARTS = {
    "account": 31000001,
    "user": 10500001,
    "pipeline": 7100001,
    "status": 61000001,
    "field": 1100001,
    "enum": 900001,
    "lead": 20000001,
    "contact": 30000001,
    "company": 40000001,
    "task": 50000001,
    "note": 60000001,
    "catalog": 8100,
    "element": 700001,
    "tag": 300001,
    "webhook": 800001,
    "loss_reason": 4200001,
    "event": 1,
    "role": 3001,
    "group": 260001,
}


class LinkIndex:
    """Symmetric links between entities; both directions share one metadata dict."""

    def __init__(self) -> None:
        self._links: dict[LinkKey, dict[LinkKey, dict[str, Any] | None]] = {}

    def link(self, a: LinkKey, b: LinkKey, metadata: dict[str, Any] | None) -> None:
        self._links.setdefault(a, {})[b] = metadata
        self._links.setdefault(b, {})[a] = metadata

    def unlink(self, a: LinkKey, b: LinkKey) -> bool:
        found = b in self._links.get(a, {})
        self._links.get(a, {}).pop(b, None)
        self._links.get(b, {}).pop(a, None)
        return found

    def linked(self, a: LinkKey, to_type: str | None = None) -> list[tuple[LinkKey, dict[str, Any] | None]]:
        return [(key, meta) for key, meta in self._links.get(a, {}).items() if to_type in (None, key[0])]

    def ids(self, a: LinkKey, to_type: str) -> list[int]:
        return [key[1] for key in self._links.get(a, {}) if key[0] == to_type]

    def is_linked(self, a: LinkKey, b: LinkKey) -> bool:
        return b in self._links.get(a, {})

    def metadata(self, a: LinkKey, b: LinkKey) -> dict[str, Any] | None:
        return self._links.get(a, {}).get(b)

    def dump(self) -> list[list[Any]]:
        seen = set()
        out = []
        for a, targets in self._links.items():
            for b, meta in targets.items():
                if (b, a) in seen:
                    continue
                seen.add((a, b))
                out.append([a[0], a[1], b[0], b[1], meta])
        return out

    @classmethod
    def load(cls, rows: list[list[Any]]) -> LinkIndex:
        index = cls()
        for a_type, a_id, b_type, b_id, meta in rows:
            index.link((a_type, a_id), (b_type, b_id), meta)
        return index


@dataclass
class Account:
    id: int
    name: str
    subdomain: str
    created_at: int
    country: str = "US"
    currency: str = "USD"
    currency_symbol: str = "$"
    timezone: str = "America/New_York"
    duplicate_control: bool = False
    users: dict[int, User] = field(default_factory=dict)
    roles: dict[int, Role] = field(default_factory=dict)
    groups: dict[int, Group] = field(default_factory=dict)
    pipelines: dict[int, Pipeline] = field(default_factory=dict)
    fields: dict[int, CustomField] = field(default_factory=dict)
    leads: dict[int, Lead] = field(default_factory=dict)
    contacts: dict[int, Contact] = field(default_factory=dict)
    companies: dict[int, Company] = field(default_factory=dict)
    tasks: dict[int, Task] = field(default_factory=dict)
    notes: dict[int, Note] = field(default_factory=dict)
    catalogs: dict[int, Catalog] = field(default_factory=dict)
    elements: dict[int, CatalogElement] = field(default_factory=dict)
    tags: dict[int, Tag] = field(default_factory=dict)
    loss_reasons: dict[int, LossReason] = field(default_factory=dict)
    task_types: dict[int, TaskType] = field(default_factory=dict)
    events: dict[str, Event] = field(default_factory=dict)  # insertion order = creation order
    webhooks: dict[str, WebhookRecord] = field(default_factory=dict)  # by destination
    # "pipeline_id:status_id" (moves into the stage, leads created there) or "pipeline_id:status_id:mail_in"
    # (incoming e-mails on its leads) -> URLs; see dp_key
    dp_destinations: dict[str, list[str]] = field(default_factory=dict)
    links: LinkIndex = field(default_factory=LinkIndex)

    # --- lookups -----------------------------------------------------------------------------------------

    @property
    def admin_user(self) -> User:
        return next((u for u in self.users.values() if u.is_admin), next(iter(self.users.values())))

    @property
    def main_pipeline(self) -> Pipeline:
        return next((p for p in self.pipelines.values() if p.is_main), next(iter(self.pipelines.values())))

    def find_status(self, pipeline_id: int, status_id: int) -> Status | None:
        pipeline = self.pipelines.get(pipeline_id)
        return pipeline.status(status_id) if pipeline else None

    def pipelines_with_status(self, status_id: int) -> list[Pipeline]:
        return [p for p in self.pipelines.values() if p.status(status_id)]

    def fields_for(self, entity_type: str, catalog_id: int | None = None) -> dict[int, CustomField]:
        return {
            f.id: f
            for f in self.fields.values()
            if f.entity_type == entity_type and (entity_type != "catalogs" or f.catalog_id == catalog_id)
        }

    def field_codes_for(self, entity_type: str, catalog_id: int | None = None) -> dict[str, CustomField]:
        return {f.code.upper(): f for f in self.fields_for(entity_type, catalog_id).values() if f.code}

    def field_named(self, entity_type: str, name: str, catalog_id: int | None = None) -> CustomField | None:
        return next((f for f in self.fields_for(entity_type, catalog_id).values() if f.name == name), None)

    def webhook_base(self) -> str:
        return f"https://{self.subdomain}.kommo.com"


_COLLECTIONS: dict[str, type] = {
    "users": User,
    "roles": Role,
    "groups": Group,
    "pipelines": Pipeline,
    "fields": CustomField,
    "leads": Lead,
    "contacts": Contact,
    "companies": Company,
    "tasks": Task,
    "notes": Note,
    "catalogs": Catalog,
    "elements": CatalogElement,
    "tags": Tag,
    "loss_reasons": LossReason,
    "task_types": TaskType,
    "webhooks": WebhookRecord,
}


def account_to_json(account: Account) -> dict[str, Any]:
    data: dict[str, Any] = {
        f.name: getattr(account, f.name)
        for f in dataclasses.fields(account)
        if f.name not in _COLLECTIONS and f.name not in ("events", "links", "dp_destinations")
    }
    for name in _COLLECTIONS:
        data[name] = [dataclasses.asdict(item) for item in getattr(account, name).values()]
    data["events"] = [dataclasses.asdict(e) for e in account.events.values()]
    data["dp_destinations"] = account.dp_destinations
    data["links"] = account.links.dump()
    return data


def _load_item(cls: type, raw: dict[str, Any]) -> Any:
    if cls is Pipeline:
        raw = {**raw, "statuses": [Status(**s) for s in raw["statuses"]]}
    elif cls is CustomField and raw.get("enums") is not None:
        raw = {**raw, "enums": [Enum(**e) for e in raw["enums"]]}
    return cls(**raw)


def account_from_json(data: dict[str, Any]) -> Account:
    scalars = {k: v for k, v in data.items() if k not in _COLLECTIONS and k not in ("events", "links")}
    account = Account(**scalars)
    for name, cls in _COLLECTIONS.items():
        items = [_load_item(cls, raw) for raw in data.get(name, [])]
        key = "destination" if name == "webhooks" else "id"
        setattr(account, name, {getattr(item, key): item for item in items})
    account.events = {e["id"]: Event(**e) for e in data.get("events", [])}
    account.links = LinkIndex.load(data.get("links", []))
    return account


class SandboxStore:
    """All accounts of one sandbox. Every read and write of account data holds :attr:`lock`."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.lock = threading.RLock()
        self.bus = ChangeBus()
        self.faults = FaultRegistry()
        self.auth = AuthRegistry(clock=clock)
        self.clock = clock
        self.accounts: dict[int, Account] = {}
        self.default_account_id: int | None = None
        self.origin = ""  # http://host:port the server is reachable at; set by the server
        self.version = 0  # bumped on every change, so a snapshot knows when to save
        self._sequences: dict[str, int] = dict(ID_STARTS)

    # --- ids, time, accounts -----------------------------------------------------------------------------

    def now(self) -> int:
        return int(self.clock())

    def next_id(self, kind: str) -> int:
        with self.lock:
            value = self._sequences[kind]
            self._sequences[kind] = value + 1
            return value

    def add_account(self, account: Account) -> Account:
        with self.lock:
            self.accounts[account.id] = account
            if self.default_account_id is None:
                self.default_account_id = account.id
            self.touch()
            return account

    def account(self, account_id: int) -> Account:
        return self.accounts[account_id]

    def account_for_host(self, host: str) -> Account | None:
        """The account whose subdomain is the first label of ``host``, else the default account."""
        label = host.split(":", 1)[0].split(".", 1)[0].lower()
        with self.lock:
            for account in self.accounts.values():
                if account.subdomain.lower() == label:
                    return account
            return self.accounts.get(self.default_account_id) if self.default_account_id else None

    def find_account(self, key: str) -> Account | None:
        with self.lock:
            for account in self.accounts.values():
                if key in (str(account.id), account.subdomain):
                    return account
        return None

    def public_origin(self, account: Account) -> str:
        return self.origin or account.webhook_base()

    def touch(self) -> None:
        self.version += 1

    # --- events and changes --------------------------------------------------------------------------------

    def record_event(
        self,
        account: Account,
        type_: str,
        entity_type: str,
        entity_id: int,
        user_id: int,
        before: list[dict[str, Any]] | None = None,
        after: list[dict[str, Any]] | None = None,
        at: int | None = None,
    ) -> Event:
        seq = self.next_id("event")
        # 26 characters of [0-9a-z], like Kommo's; hex rather than base32, which costs ten times as much
        # and is most of what a large seed spends on its events.
        event_id = hashlib.blake2b(f"{account.id}:{seq}".encode(), digest_size=13).hexdigest()
        event = Event(
            id=event_id,
            type=type_,
            entity_id=entity_id,
            entity_type=entity_type,
            created_by=user_id,
            created_at=self.now() if at is None else at,
            value_before=before or [],
            value_after=after or [],
        )
        account.events[event.id] = event
        return event

    def creation_note(self) -> list[dict[str, Any]]:
        """The ``value_after`` of ``lead_added``, ``contact_added`` and ``company_added``: Kommo names the
        note it writes about the creation (``[{"note": {"id": N}}]``), not the first stage. The id is taken
        from the notes' sequence; no note is stored under it (Kommo's notes API does not list that note
        either as far as its documentation shows)."""
        return [{"note": {"id": self.next_id("note")}}]

    def publish(
        self,
        account: Account,
        entity: Entity,
        action: Action,
        entity_id: int,
        current: dict[str, Any],
        previous: dict[str, Any] | None,
        user_id: int,
    ) -> None:
        self.touch()
        self.bus.publish(
            Change(
                account_id=account.id,
                entity=entity,
                action=action,
                entity_id=entity_id,
                current=current,
                previous=previous,
                user_id=user_id,
                at=self.now(),
            )
        )

    # --- WebhookSource -------------------------------------------------------------------------------------

    def account_block(self, account_id: int) -> dict[str, str]:
        with self.lock:
            account = self.accounts[account_id]
            return {"subdomain": account.subdomain, "id": str(account.id), "self": account.webhook_base()}

    def webhook_subscriptions(self, account_id: int) -> list[Subscription]:
        with self.lock:
            account = self.accounts[account_id]
            return [
                Subscription(
                    destination=w.destination, settings=list(w.settings), disabled=w.disabled, sort=w.sort
                )
                for w in sorted(account.webhooks.values(), key=lambda w: (w.sort, w.id))
            ]

    def webhook_set_disabled(self, account_id: int, destination: str, disabled: bool) -> None:
        with self.lock:
            record = self.accounts[account_id].webhooks.get(destination)
            if record is not None:
                record.disabled = disabled
                record.updated_at = self.now()
                self.touch()

    def dp_destinations(
        self, account_id: int, pipeline_id: int, status_id: int, trigger: str = "status"
    ) -> list[str]:
        with self.lock:
            key = dp_key(pipeline_id, status_id, trigger)
            return list(self.accounts[account_id].dp_destinations.get(key, []))

    def should_drop_webhook(self, account_id: int) -> bool:
        return self.faults.for_account(account_id).should_drop_webhook()

    # --- snapshot ------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "format": 1,
                "default_account_id": self.default_account_id,
                "sequences": dict(self._sequences),
                "accounts": [account_to_json(a) for a in self.accounts.values()],
                "auth": self.auth.snapshot(),
            }

    def restore(self, data: dict[str, Any]) -> None:
        with self.lock:
            self.accounts = {}
            for raw in data["accounts"]:
                account = account_from_json(raw)
                self.accounts[account.id] = account
            self.default_account_id = data.get("default_account_id")
            self._sequences.update(data.get("sequences", {}))
            if "auth" in data:
                self.auth.restore(data["auth"])
            self.touch()

    def save(self, path: Path) -> None:
        """Write the snapshot atomically (temp file + rename)."""
        data = self.snapshot()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, ensure_ascii=False)
        os.replace(tmp, path)

    def load(self, path: Path) -> None:
        self.restore(json.loads(path.read_text(encoding="utf-8")))
