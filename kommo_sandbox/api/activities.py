"""``/api/v4/tasks`` and notes (``/api/v4/{entity}/notes``, ``/api/v4/{entity}/{id}/notes``)."""

from __future__ import annotations

from typing import Any

from kommo_sandbox import representations
from kommo_sandbox.api.base import (
    Context,
    body_list,
    body_object,
    hal_list,
    id_filter,
    in_range,
    ordered,
    range_filter,
    self_ref,
    write_response,
)
from kommo_sandbox.entities import Note, Task
from kommo_sandbox.errors import not_found
from kommo_sandbox.http import Response, Router, as_dict, as_int_list, as_list, json_response, no_content
from kommo_sandbox.services import activities as services

NOTED = r"(?P<kind>leads|contacts|companies)"


def _flag(value: Any) -> bool | None:
    values = as_list(value)
    if not values:
        return None
    return str(values[0]).lower() in ("1", "true")


def tasks_list(ctx: Context) -> Response:
    filters = as_dict(ctx.query.get("filter"))
    ids = id_filter(filters.get("id"))
    responsible = (
        set(as_int_list(filters.get("responsible_user_id"))) if "responsible_user_id" in filters else None
    )
    completed = _flag(filters.get("is_completed"))
    types = set(as_int_list(filters.get("task_type"))) if "task_type" in filters else None
    entity_types = set(as_list(filters.get("entity_type"))) if "entity_type" in filters else None
    entity_ids = set(as_int_list(filters.get("entity_id"))) if "entity_id" in filters else None
    updated = range_filter(filters.get("updated_at"))

    def check(task: Task) -> bool:
        return (
            (ids is None or task.id in ids)
            and (responsible is None or task.responsible_user_id in responsible)
            and (completed is None or task.is_completed == completed)
            and (types is None or task.task_type_id in types)
            and (entity_types is None or task.entity_type in entity_types)
            and (entity_ids is None or task.entity_id in entity_ids)
            and in_range(task.updated_at, updated)
        )

    items = ordered(
        [t for t in ctx.account.tasks.values() if check(t)], ctx, ("complete_till", "created_at", "id")
    )
    return hal_list(ctx, "tasks", items, lambda t: representations.task(ctx.account, ctx.origin, t))


def task_get(ctx: Context, id: int) -> Response:
    task = ctx.account.tasks.get(id)
    if task is None:
        return no_content()
    return json_response(representations.task(ctx.account, ctx.origin, task))


def _task_entry(ctx: Context, task: Task, rid: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": task.id, "updated_at": task.updated_at}
    if rid is not None:
        entry["request_id"] = rid
    entry["_links"] = self_ref(ctx, f"/api/v4/tasks/{task.id}")
    return entry


def tasks_create(ctx: Context) -> Response:
    created = services.tasks_create(ctx.store, ctx.account, ctx.user_id, body_list(ctx))
    return write_response(ctx, "tasks", [_task_entry(ctx, t, rid) for t, rid in created])


def tasks_update(ctx: Context) -> Response:
    updated = services.tasks_update(ctx.store, ctx.account, ctx.user_id, body_list(ctx))
    return write_response(ctx, "tasks", [_task_entry(ctx, t, rid) for t, rid in updated])


def task_update_one(ctx: Context, id: int) -> Response:
    ((task, _),) = services.tasks_update(
        ctx.store, ctx.account, ctx.user_id, [{**body_object(ctx), "id": id}]
    )
    return json_response(_task_entry(ctx, task, None))


def _notes(ctx: Context, kind: str, entity_id: int | None) -> Response:
    filters = as_dict(ctx.query.get("filter"))
    ids = id_filter(filters.get("id"))
    types = set(as_list(filters.get("note_type"))) if "note_type" in filters else None
    entity_ids = set(as_int_list(filters.get("entity_id"))) if "entity_id" in filters else None
    updated = range_filter(filters.get("updated_at"))

    def check(note: Note) -> bool:
        return (
            note.entity_type == kind
            and (entity_id is None or note.entity_id == entity_id)
            and (ids is None or note.id in ids)
            and (types is None or note.note_type in types)
            and (entity_ids is None or note.entity_id in entity_ids)
            and in_range(note.updated_at, updated)
        )

    items = ordered([n for n in ctx.account.notes.values() if check(n)], ctx, ("updated_at", "id"))
    return hal_list(ctx, "notes", items, lambda n: representations.note(ctx.account, ctx.origin, n))


def notes_list(ctx: Context, kind: str) -> Response:
    return _notes(ctx, kind, None)


def entity_notes_list(ctx: Context, kind: str, id: int) -> Response:
    if id not in getattr(ctx.account, kind):
        raise not_found()
    return _notes(ctx, kind, id)


def note_get(ctx: Context, kind: str, id: int) -> Response:
    note = ctx.account.notes.get(id)
    if note is None or note.entity_type != kind:
        return no_content()
    return json_response(representations.note(ctx.account, ctx.origin, note))


def entity_note_get(ctx: Context, kind: str, id: int, note_id: int) -> Response:
    note = ctx.account.notes.get(note_id)
    if note is None or note.entity_type != kind or note.entity_id != id:
        return no_content()
    return json_response(representations.note(ctx.account, ctx.origin, note))


def _note_entries(ctx: Context, kind: str, notes: list[tuple[Note, str]]) -> list[dict[str, Any]]:
    return [
        {
            "id": note.id,
            "entity_id": note.entity_id,
            "request_id": rid,
            "_links": self_ref(ctx, f"/api/v4/{kind}/{note.entity_id}/notes/{note.id}"),
        }
        for note, rid in notes
    ]


def notes_create(ctx: Context, kind: str) -> Response:
    created = services.notes_create(ctx.store, ctx.account, kind, ctx.user_id, body_list(ctx), None)
    return write_response(ctx, "notes", _note_entries(ctx, kind, created))


def entity_notes_create(ctx: Context, kind: str, id: int) -> Response:
    if id not in getattr(ctx.account, kind):
        raise not_found()
    created = services.notes_create(ctx.store, ctx.account, kind, ctx.user_id, body_list(ctx), id)
    return write_response(ctx, "notes", _note_entries(ctx, kind, created))


def notes_update(ctx: Context, kind: str) -> Response:
    updated = services.notes_update(ctx.store, ctx.account, kind, ctx.user_id, body_list(ctx))
    return write_response(ctx, "notes", _note_entries(ctx, kind, updated))


def note_update_one(ctx: Context, kind: str, id: int) -> Response:
    item = {**body_object(ctx), "id": id}
    ((note, _),) = services.notes_update(ctx.store, ctx.account, kind, ctx.user_id, [item])
    return json_response(representations.note(ctx.account, ctx.origin, note))


def register(router: Router) -> None:
    router.add("GET", r"/api/v4/tasks", tasks_list)
    router.add("POST", r"/api/v4/tasks", tasks_create)
    router.add("PATCH", r"/api/v4/tasks", tasks_update)
    router.add("GET", r"/api/v4/tasks/(?P<id>\d+)", task_get)
    router.add("PATCH", r"/api/v4/tasks/(?P<id>\d+)", task_update_one)
    router.add("GET", rf"/api/v4/{NOTED}/notes", notes_list)
    router.add("POST", rf"/api/v4/{NOTED}/notes", notes_create)
    router.add("PATCH", rf"/api/v4/{NOTED}/notes", notes_update)
    router.add("GET", rf"/api/v4/{NOTED}/notes/(?P<id>\d+)", note_get)
    router.add("PATCH", rf"/api/v4/{NOTED}/notes/(?P<id>\d+)", note_update_one)
    router.add("GET", rf"/api/v4/{NOTED}/(?P<id>\d+)/notes", entity_notes_list)
    router.add("POST", rf"/api/v4/{NOTED}/(?P<id>\d+)/notes", entity_notes_create)
    router.add("GET", rf"/api/v4/{NOTED}/(?P<id>\d+)/notes/(?P<note_id>\d+)", entity_note_get)
