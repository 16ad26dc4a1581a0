"""Contacts and companies: create and update, with their events and changes (API.md §6)."""

from __future__ import annotations

from typing import Any, Literal, TypeGuard

from kommo_sandbox import representations
from kommo_sandbox.entities import Company, Contact
from kommo_sandbox.errors import FieldError, invalid_type, not_blank
from kommo_sandbox.services.common import (
    SINGULAR,
    cf_events,
    check_int,
    check_refs,
    check_str,
    check_user,
    check_values_and_tags,
    link_single,
    name_event,
    responsible_event,
    tag_events,
    tags_after,
    validated,
    validated_updates,
)
from kommo_sandbox.store import Account, SandboxStore

Kind = Literal["contacts", "companies"]


def is_kind(kind: str) -> TypeGuard[Kind]:
    return kind in ("contacts", "companies")


def party_repr(store: SandboxStore, account: Account, record: Contact | Company) -> dict[str, Any]:
    """The representation published with changes: what ``GET ?with=leads,catalog_elements`` returns."""
    origin = store.public_origin(account)
    with_ = {"leads", "catalog_elements"}
    if isinstance(record, Contact):
        return representations.contact(account, origin, record, with_)
    return representations.company(account, origin, record, with_ | {"contacts"})


def validate_party(
    account: Account, kind: Kind, raw: Any, existing: Contact | Company | None, max_cf: int | None = None
) -> tuple[dict[str, Any], list[FieldError]]:
    """Check one written contact/company; the normalized patch, or the errors."""
    if not isinstance(raw, dict):
        return {}, [invalid_type("", "array")]
    errors: list[FieldError] = []
    patch: dict[str, Any] = {}
    check_str(raw, "name", errors, patch)
    if kind == "contacts":
        check_str(raw, "first_name", errors, patch)
        check_str(raw, "last_name", errors, patch)
    for key in ("created_at", "updated_at"):
        check_int(raw, key, errors, patch)
    for key in ("responsible_user_id", "created_by", "updated_by"):
        check_user(account, raw, key, errors, patch)
    current = existing.custom_fields_values if existing else []
    embedded = check_values_and_tags(account, kind, raw, current, max_cf, errors, patch)
    if kind == "contacts" and "companies" in embedded:
        companies, ref_errors = check_refs(account.companies, embedded["companies"], "_embedded.companies")
        errors.extend(ref_errors)
        patch["company_ids"] = [c["id"] for c in companies[:1]]
    if existing is None and not any(patch.get(k) for k in ("name", "first_name", "last_name")):
        if kind == "companies":
            errors.append(not_blank("name"))
    return patch, errors


def _display_name(patch: dict[str, Any], record: Contact | None) -> tuple[str, str, str]:
    first = patch.get("first_name", record.first_name if record else "")
    last = patch.get("last_name", record.last_name if record else "")
    if "name" in patch:
        name = patch["name"]
        if record is None and "first_name" not in patch and "last_name" not in patch:
            first = name
    elif "first_name" in patch or "last_name" in patch or record is None:
        name = f"{first} {last}".strip()
    else:
        name = record.name
    return name, first, last


def create_party(
    store: SandboxStore, account: Account, kind: Kind, patch: dict[str, Any], user_id: int
) -> Contact | Company:
    now = store.now()
    record: Contact | Company
    common = {
        "id": store.next_id("contact" if kind == "contacts" else "company"),
        "responsible_user_id": patch.get("responsible_user_id") or user_id,
        "created_by": patch.get("created_by", user_id),
        "updated_by": patch.get("updated_by", user_id),
        "created_at": patch.get("created_at", now),
        "updated_at": patch.get("updated_at", patch.get("created_at", now)),
        "custom_fields_values": patch.get("custom_fields_values", []),
    }
    if kind == "contacts":
        name, first, last = _display_name(patch, None)
        record = Contact(name=name, first_name=first, last_name=last, **common)
        account.contacts[record.id] = record
    else:
        record = Company(name=patch.get("name", ""), **common)
        account.companies[record.id] = record
    record.tag_ids = tags_after(store, account, kind, [], patch)
    singular = SINGULAR[kind]
    store.record_event(
        account,
        f"{singular}_added",
        singular,
        record.id,
        user_id,
        after=store.creation_note(),
        at=record.created_at,
    )
    for company_id in patch.get("company_ids", []):
        link_single(store, account, ("contacts", record.id), ("companies", company_id), user_id)
    store.publish(account, singular, "add", record.id, party_repr(store, account, record), None, user_id)
    return record


def update_party(
    store: SandboxStore,
    account: Account,
    kind: Kind,
    record: Contact | Company,
    patch: dict[str, Any],
    user_id: int,
) -> bool:
    """Apply a validated patch; record events and publish the change. Returns whether anything changed."""
    singular = SINGULAR[kind]
    previous = party_repr(store, account, record)
    before_name, before_responsible = record.name, record.responsible_user_id
    before_cf, before_tags = record.custom_fields_values, list(record.tag_ids)
    if isinstance(record, Contact):
        record.name, record.first_name, record.last_name = _display_name(patch, record)
    elif "name" in patch:
        record.name = patch["name"]
    if patch.get("responsible_user_id"):
        record.responsible_user_id = patch["responsible_user_id"]
    record.custom_fields_values = patch.get("custom_fields_values", record.custom_fields_values)
    record.tag_ids = tags_after(store, account, kind, record.tag_ids, patch)
    linked = False
    for company_id in patch.get("company_ids", []):
        linked = (
            link_single(store, account, ("contacts", record.id), ("companies", company_id), user_id) or linked
        )
    changed = (
        linked
        or record.name != before_name
        or record.responsible_user_id != before_responsible
        or record.custom_fields_values != before_cf
        or record.tag_ids != before_tags
    )
    if not changed:
        return False
    record.updated_at = patch.get("updated_at", store.now())
    record.updated_by = patch.get("updated_by", user_id)
    name_event(store, account, singular, record.id, user_id, before_name, record.name)
    responsible_event(
        store, account, singular, record.id, user_id, before_responsible, record.responsible_user_id
    )
    cf_events(store, account, singular, record.id, user_id, before_cf, record.custom_fields_values)
    tag_events(store, account, singular, record.id, user_id, before_tags, record.tag_ids)
    current = party_repr(store, account, record)
    if record.responsible_user_id != before_responsible:
        store.publish(account, singular, "responsible", record.id, current, previous, user_id)
    else:
        store.publish(account, singular, "update", record.id, current, previous, user_id)
    return True


def parties_create(
    store: SandboxStore, account: Account, kind: Kind, user_id: int, items: list[Any]
) -> list[tuple[Contact | Company, str]]:
    patches = validated(items, lambda raw: validate_party(account, kind, raw, None))
    return [(create_party(store, account, kind, patch, user_id), rid) for patch, rid in patches]


def parties_update(
    store: SandboxStore, account: Account, kind: Kind, user_id: int, items: list[Any]
) -> list[tuple[Contact | Company, str]]:
    records: dict[int, Contact | Company] = getattr(account, kind)
    planned = validated_updates(
        items, records, lambda raw, record: validate_party(account, kind, raw, record)
    )
    for record, patch, _ in planned:
        update_party(store, account, kind, record, patch, user_id)
    return [(record, rid) for record, _, rid in planned]
