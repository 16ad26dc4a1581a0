"""Tasks and notes (API.md §10, §11)."""

from __future__ import annotations

from typing import Any

from kommo_sandbox import representations
from kommo_sandbox.entities import Note, Task
from kommo_sandbox.errors import (
    Collector,
    FieldError,
    invalid_type,
    not_blank,
    not_found_entity,
    not_supported_choice,
)
from kommo_sandbox.services.common import (
    SINGULAR,
    check_int,
    check_str,
    check_user,
    is_int,
    request_id_of,
    responsible_event,
    update_closest_task,
    validated,
    validated_updates,
)
from kommo_sandbox.services.leads import lead_repr
from kommo_sandbox.store import Account, SandboxStore

TASK_ENTITY_TYPES = ("leads", "contacts", "companies")
NOTE_TYPES = (
    "common",
    "call_in",
    "call_out",
    "service_message",
    "message_cashier",
    "geolocation",
    "sms_in",
    "sms_out",
    "extended_service_message",
    "attachment",
)
NOTE_EVENTS = {
    "common": "common_note_added",
    "call_in": "incoming_call",
    "call_out": "outgoing_call",
    "service_message": "service_note_added",
    "extended_service_message": "service_note_added",
    "sms_in": "incoming_sms",
    "sms_out": "outgoing_sms",
    "geolocation": "geo_note_added",
    "attachment": "attachment_note_added",
    "message_cashier": "common_note_added",
}


def _validate_task(
    account: Account, raw: Any, existing: Task | None
) -> tuple[dict[str, Any], list[FieldError]]:
    if not isinstance(raw, dict):
        return {}, [invalid_type("", "array")]
    errors: list[FieldError] = []
    patch: dict[str, Any] = {}
    check_str(raw, "text", errors, patch)
    for key in ("complete_till", "duration", "created_at", "updated_at"):
        check_int(raw, key, errors, patch)
    for key in ("responsible_user_id", "created_by", "updated_by"):
        check_user(account, raw, key, errors, patch)
    if existing is None:
        if not patch.get("text", "").strip() and "text" not in [e.path for e in errors]:
            errors.append(not_blank("text"))
        if "complete_till" not in raw:
            errors.append(not_blank("complete_till"))
    if "task_type_id" in raw:
        if not is_int(raw["task_type_id"]) or raw["task_type_id"] not in account.task_types:
            errors.append(not_supported_choice("task_type_id"))
        else:
            patch["task_type_id"] = raw["task_type_id"]
    if "is_completed" in raw:
        if not isinstance(raw["is_completed"], bool):
            errors.append(invalid_type("is_completed", "bool"))
        else:
            patch["is_completed"] = raw["is_completed"]
    if "result" in raw:
        result = raw["result"]
        if not isinstance(result, dict) or not isinstance(result.get("text", ""), str):
            errors.append(invalid_type("result", "array"))
        else:
            patch["result"] = {"text": result.get("text", "")}
    if "entity_type" in raw or "entity_id" in raw:
        entity_type, entity_id = raw.get("entity_type"), raw.get("entity_id")
        if entity_type not in TASK_ENTITY_TYPES:
            errors.append(not_supported_choice("entity_type"))
        elif not is_int(entity_id) or entity_id not in getattr(account, entity_type):
            errors.append(not_found_entity("entity_id"))
        else:
            patch["entity_type"], patch["entity_id"] = entity_type, entity_id
    return patch, errors


def task_repr(store: SandboxStore, account: Account, task: Task) -> dict[str, Any]:
    return representations.task(account, store.public_origin(account), task)


def tasks_create(
    store: SandboxStore, account: Account, user_id: int, items: list[Any]
) -> list[tuple[Task, str]]:
    planned = validated(items, lambda raw: _validate_task(account, raw, None))
    created = []
    for patch, rid in planned:
        now = store.now()
        task = Task(
            id=store.next_id("task"),
            text=patch["text"],
            complete_till=patch["complete_till"],
            responsible_user_id=patch.get("responsible_user_id") or user_id,
            created_by=patch.get("created_by", user_id),
            updated_by=patch.get("updated_by", user_id),
            created_at=patch.get("created_at", now),
            updated_at=patch.get("updated_at", now),
            entity_id=patch.get("entity_id"),
            entity_type=patch.get("entity_type"),
            task_type_id=patch.get("task_type_id", 1),
            is_completed=patch.get("is_completed", False),
            duration=patch.get("duration", 0),
            result=patch.get("result"),
        )
        account.tasks[task.id] = task
        update_closest_task(account, task.entity_type, task.entity_id)
        store.record_event(account, "task_added", "task", task.id, user_id)  # Kommo: [] on both sides
        store.publish(account, "task", "add", task.id, task_repr(store, account, task), None, user_id)
        created.append((task, rid))
    return created


def _apply_task(
    store: SandboxStore, account: Account, task: Task, patch: dict[str, Any], user_id: int
) -> bool:
    previous = task_repr(store, account, task)
    before = Task(**{k: getattr(task, k) for k in task.__dataclass_fields__})
    for key in (
        "text",
        "complete_till",
        "duration",
        "task_type_id",
        "is_completed",
        "result",
        "entity_type",
        "entity_id",
    ):
        if key in patch:
            setattr(task, key, patch[key])
    if patch.get("responsible_user_id"):
        task.responsible_user_id = patch["responsible_user_id"]
    tracked = (
        "text",
        "complete_till",
        "duration",
        "task_type_id",
        "is_completed",
        "result",
        "responsible_user_id",
        "entity_type",
        "entity_id",
    )
    if all(getattr(task, k) == getattr(before, k) for k in tracked):
        return False
    task.updated_at = patch.get("updated_at", store.now())
    task.updated_by = patch.get("updated_by", user_id)
    if task.is_completed and not before.is_completed:
        store.record_event(account, "task_completed", "task", task.id, user_id)  # [] on both sides
    if task.text != before.text:
        store.record_event(
            account,
            "task_text_changed",
            "task",
            task.id,
            user_id,
            before=[{"text": {"text": before.text}}],
            after=[{"text": {"text": task.text}}],
        )
    if task.complete_till != before.complete_till:
        store.record_event(
            account,
            "task_deadline_changed",
            "task",
            task.id,
            user_id,
            before=[{"task_deadline": {"timestamp": before.complete_till}}],
            after=[{"task_deadline": {"timestamp": task.complete_till}}],
        )
    responsible_event(
        store, account, "task", task.id, user_id, before.responsible_user_id, task.responsible_user_id
    )
    update_closest_task(account, before.entity_type, before.entity_id)
    update_closest_task(account, task.entity_type, task.entity_id)
    store.publish(account, "task", "update", task.id, task_repr(store, account, task), previous, user_id)
    return True


def tasks_update(
    store: SandboxStore, account: Account, user_id: int, items: list[Any]
) -> list[tuple[Task, str]]:
    planned = validated_updates(items, account.tasks, lambda raw, task: _validate_task(account, raw, task))
    for task, patch, _ in planned:
        _apply_task(store, account, task, patch, user_id)
    return [(task, rid) for task, _, rid in planned]


# --- notes --------------------------------------------------------------------------------------------------


def _validate_note(
    account: Account, entity_type: str, raw: Any, entity_id: int | None, existing: Note | None
) -> tuple[dict[str, Any], list[FieldError]]:
    if not isinstance(raw, dict):
        return {}, [invalid_type("", "array")]
    errors: list[FieldError] = []
    patch: dict[str, Any] = {}
    target = entity_id if entity_id is not None else raw.get("entity_id")
    if existing is None:
        records = getattr(account, entity_type)
        if not is_int(target) or target not in records:
            errors.append(not_found_entity("entity_id"))
        else:
            patch["entity_id"] = target
        note_type = raw.get("note_type", "common")
        if note_type not in NOTE_TYPES:
            errors.append(not_supported_choice("note_type"))
        patch["note_type"] = note_type
    params = raw.get("params")
    if params is not None:
        if not isinstance(params, dict):
            errors.append(invalid_type("params", "array"))
        else:
            patch["params"] = params
    elif existing is None:
        errors.append(not_blank("params"))
    for key in ("created_at", "updated_at"):
        check_int(raw, key, errors, patch)
    for key in ("responsible_user_id", "created_by"):
        check_user(account, raw, key, errors, patch)
    return patch, errors


def note_repr(store: SandboxStore, account: Account, note: Note) -> dict[str, Any]:
    return representations.note(account, store.public_origin(account), note)


def notes_create(
    store: SandboxStore,
    account: Account,
    entity_type: str,
    user_id: int,
    items: list[Any],
    entity_id: int | None,
) -> list[tuple[Note, str]]:
    planned = validated(items, lambda raw: _validate_note(account, entity_type, raw, entity_id, None))
    created = []
    singular = SINGULAR[entity_type]
    for patch, rid in planned:
        now = store.now()
        note = Note(
            id=store.next_id("note"),
            entity_type=entity_type,
            entity_id=patch["entity_id"],
            note_type=patch["note_type"],
            params=patch["params"],
            responsible_user_id=patch.get("responsible_user_id") or user_id,
            created_by=patch.get("created_by", user_id),
            updated_by=user_id,
            created_at=patch.get("created_at", now),
            updated_at=patch.get("updated_at", now),
        )
        account.notes[note.id] = note
        store.record_event(
            account,
            NOTE_EVENTS.get(note.note_type, "common_note_added"),
            singular,
            note.entity_id,
            user_id,
            after=[{"note": {"id": note.id}}],
        )
        store.publish(
            account, singular, "note", note.entity_id, note_repr(store, account, note), None, user_id
        )
        created.append((note, rid))
    return created


def notes_update(
    store: SandboxStore, account: Account, entity_type: str, user_id: int, items: list[Any]
) -> list[tuple[Note, str]]:
    collector = Collector()
    planned = []
    for index, raw in enumerate(items):
        rid = request_id_of(raw, index)
        note_id = raw.get("id") if isinstance(raw, dict) else None
        note = account.notes.get(note_id) if is_int(note_id) else None
        if note is None or note.entity_type != entity_type:
            collector.add(rid, [not_found_entity("id")])
            continue
        patch, errors = _validate_note(account, entity_type, raw, None, note)
        collector.add(rid, errors)
        planned.append((note, patch, rid))
    collector.raise_if_any()
    for note, patch, _ in planned:
        if "params" in patch and patch["params"] != note.params:
            note.params = patch["params"]
            note.updated_at = patch.get("updated_at", store.now())
            note.updated_by = user_id
            store.touch()
    return [(note, rid) for note, _, rid in planned]


# --- e-mails ------------------------------------------------------------------------------------------------

# The note Kommo's mail integration adds for an e-mail on a deal or a contact (the official PHP library's
# NoteFactory names it; API.md §11 lists notes only in outline). The API does not create it: ``POST /notes``
# refuses the type, as Kommo allows integrations only the types in NOTE_TYPES.
MAIL_NOTE_TYPE = "amomail_message"


def mail_receive(
    store: SandboxStore,
    account: Account,
    *,
    entity_type: str,
    entity_id: int,
    income: bool,
    subject: str,
    sender: dict[str, str] | None,
    recipient: dict[str, str] | None,
    created_at: int | None,
) -> Note:
    """An e-mail received (``income``) or sent on a lead or a contact: the mail note, announced as
    ``note_lead`` / ``note_contact``; an incoming one on a lead also fires the ``mail_in`` Digital Pipeline
    hooks of the lead's stage. No events entry: Kommo's events log has no e-mail type (API.md §11)."""
    record = getattr(account, entity_type)[entity_id]
    now = store.now()
    at = created_at if created_at is not None else now
    note_id = store.next_id("note")
    user = account.admin_user.id
    note = Note(
        id=note_id,
        entity_type=entity_type,
        entity_id=entity_id,
        note_type=MAIL_NOTE_TYPE,
        params={
            "income": income,
            "from": dict(sender or {"email": "client@example.com", "name": "Client"}),
            "to": dict(recipient or {"email": "sales@example.com", "name": "Sales"}),
            "subject": subject,
            "content_summary": subject[:100],
            "thread_id": note_id,
            "message_id": f"<{note_id}@sandbox.kommo>",
            "attach_cnt": 0,
        },
        responsible_user_id=record.responsible_user_id,
        created_by=0 if income else user,
        updated_by=0 if income else user,
        created_at=at,
        updated_at=max(at, now),
    )
    account.notes[note.id] = note
    singular = SINGULAR[entity_type]
    store.publish(
        account, singular, "note", entity_id, note_repr(store, account, note), None, note.created_by
    )
    if income and entity_type == "leads":
        store.publish(account, "lead", "mail_in", entity_id, lead_repr(store, account, record), None, 0)
    return note
