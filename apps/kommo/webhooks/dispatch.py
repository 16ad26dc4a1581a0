"""What each kind of webhook item asks of the portal: a dict from (entity, action) to a handler, and the
event types the portal deliberately ignores.

Handlers never call Kommo and never write: they add to a :class:`Plan`, which a batch of events shares,
so that every lead, contact, company and catalog element named in the batch is re-fetched once, in pages
of up to 250, before anything is written (webhook bodies are notifications; Kommo's API is the truth).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from apps.kommo.webhooks.parser import WebhookItem, WebhookParseError


@dataclass(frozen=True)
class Move:
    """A stage move reported by a ``leads[status]`` item. ``at`` is ``last_modified``; Digital Pipeline
    hooks carry no time, so it is None for them."""

    lead_id: int
    from_status_id: int | None
    to_status_id: int
    from_pipeline_id: int | None
    to_pipeline_id: int | None
    at: dt.datetime | None
    moved_by: int | None


@dataclass(frozen=True)
class Touch:
    """A note, call, e-mail or message added to a deal or a contact (``entity``: lead or contact): someone
    was in touch with the people behind it at ``at``."""

    entity: str
    kommo_id: int
    at: dt.datetime


# Webhook note types that are a touch: a text note, a call in or out, an SMS in or out, an e-mail.
# Attachments and service messages (the portal's own notes among them) are not. Kommo's webhook numbers its
# note types (4 text, 5 attachment, …: API.md §12.2); the number of an e-mail note is documented nowhere,
# so the e-mail is recognised by its API v4 name, ``amomail_message`` (the official PHP library's
# NoteFactory), which is what the sandbox sends for it. A webhook that numbers it is missed here and the
# events sweep's read of the e-mail notes still sees it (docs/stakeholders.md).
MAIL_NOTE_TYPE = "amomail_message"
TOUCH_NOTE_TYPES = frozenset({"4", "10", "11", "102", "103", MAIL_NOTE_TYPE})


@dataclass
class Plan:
    """Ids to re-fetch, deletions to confirm, and moves to record, for one batch of events."""

    leads: set[int] = field(default_factory=set)
    contacts: set[int] = field(default_factory=set)
    companies: set[int] = field(default_factory=set)
    elements: dict[int, set[int]] = field(default_factory=dict)  # catalog id → element ids
    deleted_leads: set[int] = field(default_factory=set)
    deleted_contacts: set[int] = field(default_factory=set)
    deleted_companies: set[int] = field(default_factory=set)
    deleted_elements: dict[int, set[int]] = field(default_factory=dict)
    moves: list[Move] = field(default_factory=list)
    touches: list[Touch] = field(default_factory=list)
    # When the delivery being read arrived: the time of what a body reports without one (a Digital
    # Pipeline hook names a deal, never a moment). None: such reports cannot be dated and are dropped.
    received_at: dt.datetime | None = field(default=None, compare=False)

    def merge(self, other: Plan) -> None:
        self.leads |= other.leads
        self.contacts |= other.contacts
        self.companies |= other.companies
        self.deleted_leads |= other.deleted_leads
        self.deleted_contacts |= other.deleted_contacts
        self.deleted_companies |= other.deleted_companies
        for mine, theirs in (
            (self.elements, other.elements),
            (self.deleted_elements, other.deleted_elements),
        ):
            for catalog_id, ids in theirs.items():
                mine.setdefault(catalog_id, set()).update(ids)
        self.moves += other.moves
        self.touches += other.touches


Handler = Callable[[Plan, WebhookItem], None]


def _id(item: WebhookItem) -> int:
    if item.id is None:
        raise WebhookParseError(f"{item.entity} {item.action} item without a numeric id")
    return item.id


def lead_changed(plan: Plan, item: WebhookItem) -> None:
    plan.leads.add(_id(item))


def lead_moved(plan: Plan, item: WebhookItem) -> None:
    lead_id = _id(item)
    plan.leads.add(lead_id)
    to_status = item.number("status_id")
    if to_status is None:
        raise WebhookParseError(f"leads[status] item {lead_id} without status_id")
    plan.moves.append(
        Move(
            lead_id=lead_id,
            from_status_id=item.number("old_status_id"),
            to_status_id=to_status,
            from_pipeline_id=item.number("old_pipeline_id") or item.number("pipeline_id"),
            to_pipeline_id=item.number("pipeline_id"),
            at=item.moment("last_modified"),
            moved_by=item.number("modified_user_id"),
        )
    )


def lead_deleted(plan: Plan, item: WebhookItem) -> None:
    """Re-fetched too: a lead restored since the delivery comes back from Kommo and stays live."""
    plan.leads.add(_id(item))
    plan.deleted_leads.add(_id(item))


def contact_changed(plan: Plan, item: WebhookItem) -> None:
    plan.contacts.add(_id(item))


def contact_deleted(plan: Plan, item: WebhookItem) -> None:
    plan.contacts.add(_id(item))
    plan.deleted_contacts.add(_id(item))


def company_changed(plan: Plan, item: WebhookItem) -> None:
    plan.companies.add(_id(item))


def company_deleted(plan: Plan, item: WebhookItem) -> None:
    plan.companies.add(_id(item))
    plan.deleted_companies.add(_id(item))


def _catalog_id(item: WebhookItem) -> int:
    catalog_id = item.number("catalog_id")
    if catalog_id is None:
        raise WebhookParseError(f"catalogs[{item.action}] item without catalog_id")
    return catalog_id


def element_changed(plan: Plan, item: WebhookItem) -> None:
    plan.elements.setdefault(_catalog_id(item), set()).add(_id(item))


def element_deleted(plan: Plan, item: WebhookItem) -> None:
    element_changed(plan, item)
    plan.deleted_elements.setdefault(_catalog_id(item), set()).add(_id(item))


# ``element_type`` of a task's entity in webhooks: 1 contact, 2 lead, 3 company.
TASK_ON_CONTACT = 1
TASK_ON_LEAD = 2
# Kommo's task type "Meeting" (``task_type``; 1 is "Follow-up"): a completed one is a touch.
MEETING_TASK_TYPE = 2


def task_changed(plan: Plan, item: WebhookItem) -> None:
    """A task added to or changed on a deal: the deal is re-fetched, for its ``closest_task_at`` (the
    deadline of its earliest open task; empty when it has none), which the stuck-deals report reads. Tasks
    on contacts and companies change nothing the portal mirrors. A meeting completed on a deal or a contact
    is a touch of the people behind it, at its completion (the task's last change)."""
    element_type, element_id = item.number("element_type"), item.number("element_id")
    if element_type == TASK_ON_LEAD and element_id is not None:
        plan.leads.add(element_id)
    completed = str(item.fields.get("status") or "") == "1"
    if completed and item.number("task_type") == MEETING_TASK_TYPE and element_id is not None:
        entity = {TASK_ON_LEAD: "lead", TASK_ON_CONTACT: "contact"}.get(element_type or 0)
        at = item.moment("updated_at") or item.moment("last_modified")
        if entity is not None and at is not None:
            plan.touches.append(Touch(entity=entity, kommo_id=element_id, at=at))


def note_added(plan: Plan, item: WebhookItem) -> None:
    """A note on a deal or a contact: a touch when it is a text, a call or an SMS (nothing to re-fetch)."""
    if str(item.fields.get("note_type") or "") not in TOUCH_NOTE_TYPES:
        return
    element_id = item.number("element_id")
    at = item.moment("created_at") or item.moment("date_create")
    if element_id is not None and at is not None:
        plan.touches.append(Touch(entity=item.entity, kommo_id=element_id, at=at))


def mail_received(plan: Plan, item: WebhookItem) -> None:
    """A Digital Pipeline ``mail_in`` hook: an e-mail came in on the deal (API.md §12.3). Its body holds the
    deal's ids and no moment, so the touch is dated when the delivery arrived: no later than the e-mail
    plus Kommo's delivery and retries (at most an hour), never when a late batch happens to run."""
    lead_id = _id(item)
    if plan.received_at is not None:
        plan.touches.append(Touch(entity="lead", kommo_id=lead_id, at=plan.received_at))


def unsorted_accepted(plan: Plan, item: WebhookItem) -> None:
    """An incoming lead was accepted: the leads it became are real leads now."""
    plan.leads.update(item.result_ids("leads"))


HANDLERS: dict[tuple[str, str], Handler] = {
    ("lead", "add"): lead_changed,
    ("lead", "update"): lead_changed,
    ("lead", "restore"): lead_changed,
    ("lead", "responsible"): lead_changed,
    ("lead", "status"): lead_moved,
    ("lead", "delete"): lead_deleted,
    ("contact", "add"): contact_changed,
    ("contact", "update"): contact_changed,
    ("contact", "restore"): contact_changed,
    ("contact", "delete"): contact_deleted,
    ("company", "add"): company_changed,
    ("company", "update"): company_changed,
    ("company", "restore"): company_changed,
    ("company", "delete"): company_deleted,
    ("catalog_element", "add"): element_changed,
    ("catalog_element", "update"): element_changed,
    ("catalog_element", "delete"): element_deleted,
    ("task", "add"): task_changed,
    ("task", "update"): task_changed,
    ("unsorted", "accept"): unsorted_accepted,
    ("lead", "note"): note_added,
    ("contact", "note"): note_added,
    # Digital Pipeline: an incoming e-mail on the deal is a touch of its main contact
    ("lead", "mail_in"): mail_received,
}

# Sent by Kommo, not mirrored by the portal: an event made only of these is marked ``ignored``.
IGNORED: frozenset[tuple[str, str]] = frozenset(
    {
        ("company", "note"),
        # Kommo names no deal in a task's deletion; the deal's next re-fetch brings its closest_task_at.
        ("task", "delete"),
        ("unsorted", "add"),
        ("unsorted", "update"),
        ("unsorted", "decline"),
        ("message", "add"),
        ("talk", "add"),
        ("talk", "update"),
        # Digital Pipeline triggers that do not move the deal (an incoming call is seen by its note)
        ("lead", "call_in"),
        ("lead", "chat"),
        ("lead", "site_visit"),
    }
)


def plan_items(
    items: tuple[WebhookItem, ...], *, received_at: dt.datetime | None = None
) -> tuple[Plan, bool, list[str]]:
    """What ``items`` need; whether any item needs work; and the event types that are neither handled
    nor known to be ignorable (they are ignored too, and named). ``received_at``: when their delivery
    arrived. :class:`WebhookParseError` when an item lacks what its handler needs."""
    plan = Plan(received_at=received_at)
    handled = False
    unknown: list[str] = []
    for item in items:
        handler = HANDLERS.get(item.event)
        if handler is not None:
            handler(plan, item)
            handled = True
        elif item.event not in IGNORED:
            unknown.append(f"{item.entity}[{item.action}]")
    return plan, handled, sorted(set(unknown))
