"""Pieces shared by the services: request ids, scalar checks, tags, links and the events they record."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeGuard, TypeVar

from kommo_sandbox.changes import Entity
from kommo_sandbox.entities import CfValues, Tag
from kommo_sandbox.errors import (
    Collector,
    FieldError,
    invalid_type,
    not_blank,
    not_found_entity,
    not_supported_choice,
)
from kommo_sandbox.fields import apply_values, event_values
from kommo_sandbox.store import Account, SandboxStore

R = TypeVar("R")
Patch = dict[str, Any]
Checked = tuple[Patch, list[FieldError]]

SINGULAR: dict[str, Entity] = {
    "leads": "lead",
    "contacts": "contact",
    "companies": "company",
    "catalog_elements": "catalog_element",
}


def request_id_of(item: Any, index: int) -> str:
    """The client's ``request_id`` as a string, or the item's position ("0", "1", ...)."""
    if isinstance(item, dict) and item.get("request_id") not in (None, ""):
        return str(item["request_id"])
    return str(index)


def is_int(value: Any) -> TypeGuard[int]:
    """An int that is not a bool (JSON ``true`` is not an id)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(raw: dict[str, Any], key: str, errors: list[FieldError], patch: dict[str, Any]) -> None:
    if key in raw:
        if is_int(raw[key]):
            patch[key] = raw[key]
        else:
            errors.append(invalid_type(key, "int"))


def check_str(raw: dict[str, Any], key: str, errors: list[FieldError], patch: dict[str, Any]) -> None:
    if key in raw:
        if isinstance(raw[key], str):
            patch[key] = raw[key]
        else:
            errors.append(invalid_type(key, "string"))


def check_user(
    account: Account, raw: dict[str, Any], key: str, errors: list[FieldError], patch: dict[str, Any]
) -> None:
    if key not in raw:
        return
    value = raw[key]
    if not is_int(value):
        errors.append(invalid_type(key, "int"))
    elif value != 0 and value not in account.users:
        errors.append(not_supported_choice(key))
    else:
        patch[key] = value


def parse_tags(
    account: Account, entity_type: str, raw: Any, path: str
) -> tuple[list[tuple[str, Any]], list[FieldError]]:
    """``[{"id": 1} | {"name": "x"}]`` → ``[("id", 1) | ("name", "x")]``; names become tags on apply."""
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return [], [invalid_type(path, "array")]
    out: list[tuple[str, Any]] = []
    errors: list[FieldError] = []
    for index, item in enumerate(raw):
        if isinstance(item, dict) and is_int(item.get("id")):
            tag = account.tags.get(item["id"])
            if tag is None or tag.entity_type != entity_type:
                errors.append(not_supported_choice(f"{path}.{index}.id"))
            else:
                out.append(("id", item["id"]))
        elif isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"].strip():
            out.append(("name", item["name"].strip()))
        else:
            errors.append(invalid_type(f"{path}.{index}", "array"))
    return out, errors


def resolve_tags(
    store: SandboxStore, account: Account, entity_type: str, refs: list[tuple[str, Any]]
) -> list[int]:
    ids: list[int] = []
    for kind, value in refs:
        if kind == "id":
            tag_id = value
        else:
            existing = next(
                (
                    t
                    for t in account.tags.values()
                    if t.entity_type == entity_type and t.name.lower() == value.lower()
                ),
                None,
            )
            if existing is None:
                existing = Tag(store.next_id("tag"), value, entity_type)
                account.tags[existing.id] = existing
            tag_id = existing.id
        if tag_id not in ids:
            ids.append(tag_id)
    return ids


def tags_after(
    store: SandboxStore, account: Account, entity_type: str, current: list[int], patch: Patch
) -> list[int]:
    """The tag ids after a patch: ``_embedded.tags`` replaces, then ``tags_to_add`` / ``tags_to_delete``."""
    tag_ids = list(current)
    if "tags" in patch:
        tag_ids = resolve_tags(store, account, entity_type, patch["tags"])
    for tag_id in resolve_tags(store, account, entity_type, patch.get("tags_to_add", [])):
        if tag_id not in tag_ids:
            tag_ids.append(tag_id)
    removed = resolve_tags(store, account, entity_type, patch.get("tags_to_delete", []))
    return [t for t in tag_ids if t not in removed]


def check_values_and_tags(
    account: Account,
    entity_type: str,
    raw: dict[str, Any],
    current: CfValues,
    max_cf: int | None,
    errors: list[FieldError],
    patch: Patch,
) -> dict[str, Any]:
    """``custom_fields_values``, ``_embedded.tags``, ``tags_to_add`` / ``tags_to_delete`` of a lead, contact
    or company; returns ``_embedded`` (``{}`` when it is not an object, which is an error)."""
    if "custom_fields_values" in raw:
        values, cf_errors = apply_values(
            account.fields_for(entity_type),
            account.field_codes_for(entity_type),
            current,
            raw["custom_fields_values"],
            max_cf,
        )
        errors.extend(cf_errors)
        patch["custom_fields_values"] = values
    embedded = raw.get("_embedded") or {}
    if not isinstance(embedded, dict):
        errors.append(invalid_type("_embedded", "array"))
        embedded = {}
    if "tags" in embedded:
        refs, tag_errors = parse_tags(account, entity_type, embedded["tags"], "_embedded.tags")
        errors.extend(tag_errors)
        patch["tags"] = refs
    for key in ("tags_to_add", "tags_to_delete"):
        if key in raw:
            refs, tag_errors = parse_tags(account, entity_type, raw[key], key)
            errors.extend(tag_errors)
            patch[key] = refs
    return embedded


def validated(items: list[Any], check: Callable[[Any], Checked]) -> list[tuple[Patch, str]]:
    """Check every item of a create batch; the patches with their request ids, or 400 for the whole batch."""
    collector = Collector()
    planned = []
    for index, raw in enumerate(items):
        rid = request_id_of(raw, index)
        patch, errors = check(raw)
        collector.add(rid, errors)
        planned.append((patch, rid))
    collector.raise_if_any()
    return planned


def validated_updates(
    items: list[Any], records: Mapping[int, R], check: Callable[[dict[str, Any], R], Checked]
) -> list[tuple[R, Patch, str]]:
    """Check every item of an update batch: each needs the ``id`` of an existing, not deleted record.
    The records with their patches and request ids, or 400 for the whole batch."""
    collector = Collector()
    planned = []
    for index, raw in enumerate(items):
        rid = request_id_of(raw, index)
        record_id = raw.get("id") if isinstance(raw, dict) else None
        if not is_int(record_id):
            collector.add(rid, [not_blank("id")])
            continue
        record = records.get(record_id)
        if record is None or getattr(record, "is_deleted", False):
            collector.add(rid, [not_found_entity("id")])
            continue
        patch, errors = check(raw, record)
        collector.add(rid, errors)
        planned.append((record, patch, rid))
    collector.raise_if_any()
    return planned


def check_refs(
    account_items: dict[int, Any], raw: Any, path: str
) -> tuple[list[dict[str, Any]], list[FieldError]]:
    """``_embedded.contacts`` / ``companies`` on write: ``[{"id": 1, ...}]`` naming existing records."""
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return [], [invalid_type(path, "array")]
    out = []
    errors: list[FieldError] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not is_int(item.get("id")):
            errors.append(invalid_type(f"{path}.{index}.id", "int"))
        elif item["id"] not in account_items or getattr(account_items[item["id"]], "is_deleted", False):
            errors.append(not_found_entity(f"{path}.{index}.id"))
        else:
            out.append(item)
    return out, errors


def name_event(
    store: SandboxStore, account: Account, entity: str, entity_id: int, user_id: int, before: str, after: str
) -> None:
    """``name_field_changed`` when the name changed."""
    if after != before:
        store.record_event(
            account,
            "name_field_changed",
            entity,
            entity_id,
            user_id,
            before=[{"name_field_value": {"name": before}}],
            after=[{"name_field_value": {"name": after}}],
        )


def responsible_event(
    store: SandboxStore, account: Account, entity: str, entity_id: int, user_id: int, before: int, after: int
) -> None:
    """``entity_responsible_changed`` when the responsible user changed."""
    if after != before:
        store.record_event(
            account,
            "entity_responsible_changed",
            entity,
            entity_id,
            user_id,
            before=[{"responsible_user": {"id": before}}],
            after=[{"responsible_user": {"id": after}}],
        )


def tag_events(
    store: SandboxStore,
    account: Account,
    entity: str,
    entity_id: int,
    user_id: int,
    before: list[int],
    after: list[int],
) -> None:
    for tag_id in after:
        if tag_id not in before and tag_id in account.tags:
            store.record_event(
                account,
                "entity_tag_added",
                entity,
                entity_id,
                user_id,
                after=[{"tag": {"name": account.tags[tag_id].name}}],
            )
    for tag_id in before:
        if tag_id not in after and tag_id in account.tags:
            store.record_event(
                account,
                "entity_tag_deleted",
                entity,
                entity_id,
                user_id,
                before=[{"tag": {"name": account.tags[tag_id].name}}],
            )


def cf_events(
    store: SandboxStore,
    account: Account,
    entity: str,
    entity_id: int,
    user_id: int,
    before: CfValues,
    after: CfValues,
) -> None:
    """One ``custom_field_value_changed`` event per field whose values changed."""
    old = {item["field_id"]: item["values"] for item in before}
    new = {item["field_id"]: item["values"] for item in after}
    for field_id in list(dict.fromkeys([*old, *new])):
        if old.get(field_id) == new.get(field_id):
            continue
        field = account.fields.get(field_id)
        if field is None:
            continue
        store.record_event(
            account,
            "custom_field_value_changed",
            entity,
            entity_id,
            user_id,
            before=event_values(field, old.get(field_id, [])),
            after=event_values(field, new.get(field_id, [])),
        )


def link_events(
    store: SandboxStore, account: Account, a: tuple[str, int], b: tuple[str, int], user_id: int, linked: bool
) -> None:
    """``entity_linked`` / ``entity_unlinked`` on both sides of a link."""
    type_ = "entity_linked" if linked else "entity_unlinked"
    for this, other in ((a, b), (b, a)):
        if this[0] == "catalog_elements":
            continue
        value = [{"link": {"entity": {"id": other[1], "type": SINGULAR[other[0]]}}}]
        if linked:
            store.record_event(account, type_, SINGULAR[this[0]], this[1], user_id, after=value)
        else:
            store.record_event(account, type_, SINGULAR[this[0]], this[1], user_id, before=value)


def link_contact_to_lead(
    store: SandboxStore, account: Account, lead_id: int, contact_id: int, is_main: bool, user_id: int
) -> bool:
    """Link a contact to a lead (``is_main`` makes it the main contact). Returns whether anything changed."""
    lead_key, contact_key = ("leads", lead_id), ("contacts", contact_id)
    others = [meta for _, meta in account.links.linked(lead_key, "contacts") if meta is not None]
    if account.links.is_linked(lead_key, contact_key):
        meta = account.links.metadata(lead_key, contact_key)
        if not is_main or meta is None or meta.get("main_contact"):
            return False
        for other in others:
            other["main_contact"] = False
        meta["main_contact"] = True
        return True
    main = is_main or not any(meta.get("main_contact") for meta in others)
    if main:
        for other in others:
            other["main_contact"] = False
    account.links.link(lead_key, contact_key, {"main_contact": main})
    link_events(store, account, lead_key, contact_key, user_id, linked=True)
    return True


def link_single(
    store: SandboxStore, account: Account, a: tuple[str, int], b: tuple[str, int], user_id: int
) -> bool:
    """Link ``a`` to ``b`` where ``a`` can have only one of ``b``'s kind (a lead's or contact's company)."""
    if account.links.is_linked(a, b):
        return False
    for other, _ in account.links.linked(a, b[0]):
        account.links.unlink(a, other)
        link_events(store, account, a, other, user_id, linked=False)
    account.links.link(a, b, None)
    link_events(store, account, a, b, user_id, linked=True)
    return True


def update_closest_task(account: Account, entity_type: str | None, entity_id: int | None) -> None:
    """``closest_task_at`` of a lead/contact/company: the earliest deadline of its open tasks."""
    if entity_type not in ("leads", "contacts", "companies") or entity_id is None:
        return
    record = getattr(account, entity_type).get(entity_id)
    if record is None:
        return
    deadlines = [
        t.complete_till
        for t in account.tasks.values()
        if t.entity_type == entity_type and t.entity_id == entity_id and not t.is_completed
    ]
    record.closest_task_at = min(deadlines) if deadlines else None
