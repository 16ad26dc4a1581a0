"""The contract between the sandbox's store and its webhook sender.

The store publishes one :class:`Change` for every change it makes to an entity (through the API, the board,
a seed or the admin API). The webhook sender subscribes to the bus and turns changes into deliveries in
Kommo's wire format. The sender reads everything else it needs through :class:`WebhookSource`, which the
store implements; it never touches the store's internals.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Entity = Literal["lead", "contact", "company", "task", "catalog_element", "note"]
Action = Literal["add", "update", "delete", "restore", "status", "responsible", "note", "mail_in"]


@dataclass(frozen=True)
class Change:
    """One change to one entity, as Kommo would report it.

    ``current`` and ``previous`` are the entity's API v4 representation (what ``GET`` returns, with
    ``_embedded`` contacts, companies, tags and catalog elements for leads; ``custom_fields_values`` in the
    read shape, including ``field_type``), after and before the change. ``previous`` is ``None`` for ``add``.
    For ``note`` changes, ``current`` is the note and ``entity`` is the entity the note belongs to.
    ``mail_in`` (an e-mail came in on a lead, ``current`` the lead) reaches only the Digital Pipeline hooks
    of the lead's stage that listen for it: Kommo has no general webhook for an e-mail.
    A status change is published as ``action="status"`` (Kommo also sends ``update`` for it when the
    account subscribed to ``update_lead``: the sender decides that from the subscription settings).
    ``user_id`` is the Kommo user who made the change (0 for the system).
    """

    account_id: int
    entity: Entity
    action: Action
    entity_id: int
    current: dict[str, Any]
    previous: dict[str, Any] | None = None
    user_id: int = 0
    at: int = 0  # unix seconds


@dataclass
class Subscription:
    destination: str
    settings: list[str]  # Kommo's codes: add_lead, update_lead, status_lead, add_contact, ...
    disabled: bool = False
    sort: int = 10


class WebhookSource(Protocol):
    def account_block(self, account_id: int) -> dict[str, str]:
        """``{"subdomain": ..., "id": ..., "self": "https://x.kommo.com"}`` for the ``account[...]`` keys."""

    def webhook_subscriptions(self, account_id: int) -> list[Subscription]: ...

    def webhook_set_disabled(self, account_id: int, destination: str, disabled: bool) -> None: ...

    def dp_destinations(
        self, account_id: int, pipeline_id: int, status_id: int, trigger: str = "status"
    ) -> list[str]:
        """Digital Pipeline "send webhook" URLs configured on that stage for ``trigger`` (``status``: a
        move into the stage or a lead created there; ``mail_in``: an incoming e-mail)."""

    def should_drop_webhook(self, account_id: int) -> bool:
        """Fault injection: whether to silently drop the next delivery."""


@dataclass
class ChangeBus:
    """A synchronous fan-out: subscribers must return quickly (the sender only enqueues)."""

    _subscribers: list[Callable[[Change], None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def subscribe(self, fn: Callable[[Change], None]) -> None:
        with self._lock:
            self._subscribers.append(fn)

    def publish(self, change: Change) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for fn in subscribers:
            fn(change)
