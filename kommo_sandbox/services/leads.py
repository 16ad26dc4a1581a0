"""Leads: create, batch and single update, /leads/complex, delete and restore (API.md §4, §5)."""

from __future__ import annotations

import re
from typing import Any

from kommo_sandbox import representations
from kommo_sandbox.entities import CLOSED_STATUS_IDS, Contact, Lead
from kommo_sandbox.errors import (
    ApiError,
    FieldError,
    invalid_type,
    limit_exceeded,
    not_found_entity,
    not_supported_choice,
    too_many,
)
from kommo_sandbox.http import as_dict
from kommo_sandbox.services.common import (
    cf_events,
    check_int,
    check_refs,
    check_str,
    check_user,
    check_values_and_tags,
    is_int,
    link_contact_to_lead,
    link_single,
    name_event,
    responsible_event,
    tag_events,
    tags_after,
    validated,
    validated_updates,
)
from kommo_sandbox.services.parties import create_party, validate_party
from kommo_sandbox.store import Account, SandboxStore

COMPLEX_MAX_LEADS = 50
COMPLEX_MAX_CF = 40


def lead_repr(store: SandboxStore, account: Account, lead: Lead) -> dict[str, Any]:
    """The representation published with changes (``with=contacts,catalog_elements``)."""
    return representations.lead(account, store.public_origin(account), lead, {"contacts", "catalog_elements"})


def _resolve_stage(
    account: Account,
    raw: dict[str, Any],
    existing: Lead | None,
    errors: list[FieldError],
    patch: dict[str, Any],
) -> None:
    """Work out ``pipeline_id`` / ``status_id`` from what was sent and where the lead is."""
    pipeline_id = raw.get("pipeline_id")
    status_id = raw.get("status_id")
    if "pipeline_id" in raw and not is_int(pipeline_id):
        errors.append(invalid_type("pipeline_id", "int"))
        return
    if "status_id" in raw and not is_int(status_id):
        errors.append(invalid_type("status_id", "int"))
        return
    if pipeline_id is not None and pipeline_id not in account.pipelines:
        errors.append(not_supported_choice("pipeline_id"))
        return
    current_pipeline = existing.pipeline_id if existing else account.main_pipeline.id
    if status_id is not None:
        if pipeline_id is not None:
            if account.find_status(pipeline_id, status_id) is None:
                errors.append(not_supported_choice("status_id"))
                return
        elif account.find_status(current_pipeline, status_id) is not None:
            pipeline_id = current_pipeline
        else:
            candidates = account.pipelines_with_status(status_id)
            if len(candidates) != 1:
                errors.append(not_supported_choice("status_id"))
                return
            pipeline_id = candidates[0].id
        patch["pipeline_id"], patch["status_id"] = pipeline_id, status_id
    elif pipeline_id is not None and (existing is None or pipeline_id != existing.pipeline_id):
        patch["pipeline_id"] = pipeline_id
        patch["status_id"] = account.pipelines[pipeline_id].first_working_status().id
    elif existing is None:
        patch["pipeline_id"] = current_pipeline
        patch["status_id"] = account.pipelines[current_pipeline].first_working_status().id


def validate_lead(
    account: Account, raw: Any, existing: Lead | None, max_cf: int | None = None
) -> tuple[dict[str, Any], list[FieldError]]:
    """Check one written lead; the normalized patch, or the errors (paths as Kommo reports them)."""
    if not isinstance(raw, dict):
        return {}, [invalid_type("", "array")]
    errors: list[FieldError] = []
    patch: dict[str, Any] = {}
    check_str(raw, "name", errors, patch)
    for key in ("price", "created_at", "updated_at", "closed_at"):
        check_int(raw, key, errors, patch)
    if "price" in patch and patch["price"] < 0:
        errors.append(invalid_type("price", "positive int"))
    for key in ("responsible_user_id", "created_by", "updated_by"):
        check_user(account, raw, key, errors, patch)
    if raw.get("loss_reason_id") is not None:
        if raw["loss_reason_id"] not in account.loss_reasons:
            errors.append(not_supported_choice("loss_reason_id"))
        else:
            patch["loss_reason_id"] = raw["loss_reason_id"]
    _resolve_stage(account, raw, existing, errors, patch)
    current = existing.custom_fields_values if existing else []
    check_values_and_tags(account, "leads", raw, current, max_cf, errors, patch)
    return patch, errors


def _validate_links(
    account: Account, raw: dict[str, Any], errors: list[FieldError], patch: dict[str, Any]
) -> None:
    embedded = as_dict(raw.get("_embedded"))
    if "contacts" in embedded:
        contacts, ref_errors = check_refs(account.contacts, embedded["contacts"], "_embedded.contacts")
        errors.extend(ref_errors)
        patch["contacts"] = [(c["id"], bool(c.get("is_main"))) for c in contacts]
    if "companies" in embedded:
        companies, ref_errors = check_refs(account.companies, embedded["companies"], "_embedded.companies")
        errors.extend(ref_errors)
        patch["company_ids"] = [c["id"] for c in companies[:1]]


def _apply_links(
    store: SandboxStore, account: Account, lead: Lead, patch: dict[str, Any], user_id: int
) -> bool:
    changed = False
    for contact_id, is_main in patch.get("contacts", []):
        changed = link_contact_to_lead(store, account, lead.id, contact_id, is_main, user_id) or changed
    for company_id in patch.get("company_ids", []):
        changed = (
            link_single(store, account, ("leads", lead.id), ("companies", company_id), user_id) or changed
        )
    return changed


def create_lead(store: SandboxStore, account: Account, patch: dict[str, Any], user_id: int) -> Lead:
    now = store.now()
    lead_id = store.next_id("lead")
    created_at = patch.get("created_at", now)
    status_id = patch["status_id"]
    lead = Lead(
        id=lead_id,
        name=patch.get("name") or f"Lead #{lead_id}",
        price=patch.get("price", 0),
        responsible_user_id=patch.get("responsible_user_id") or user_id,
        status_id=status_id,
        pipeline_id=patch["pipeline_id"],
        created_by=patch.get("created_by", user_id),
        updated_by=patch.get("updated_by", user_id),
        created_at=created_at,
        updated_at=patch.get("updated_at", created_at),
        closed_at=patch.get("closed_at", now) if status_id in CLOSED_STATUS_IDS else None,
        loss_reason_id=patch.get("loss_reason_id"),
        custom_fields_values=patch.get("custom_fields_values", []),
    )
    lead.tag_ids = tags_after(store, account, "leads", [], patch)
    account.leads[lead.id] = lead
    store.record_event(
        account,
        "lead_added",
        "lead",
        lead.id,
        user_id,
        after=store.creation_note(),  # not the first stage: Kommo names a note here
        at=lead.created_at,
    )
    _apply_links(store, account, lead, patch, user_id)
    store.publish(account, "lead", "add", lead.id, lead_repr(store, account, lead), None, user_id)
    return lead


def update_lead(
    store: SandboxStore, account: Account, lead: Lead, patch: dict[str, Any], user_id: int
) -> bool:
    """Apply a validated patch: the board, the API and the admin API all move leads through here."""
    previous = lead_repr(store, account, lead)
    before = Lead(**{k: getattr(lead, k) for k in lead.__dataclass_fields__})
    for key in ("name", "price", "pipeline_id", "status_id", "loss_reason_id"):
        if key in patch:
            setattr(lead, key, patch[key])
    if patch.get("responsible_user_id"):
        lead.responsible_user_id = patch["responsible_user_id"]
    lead.custom_fields_values = patch.get("custom_fields_values", lead.custom_fields_values)
    lead.tag_ids = tags_after(store, account, "leads", lead.tag_ids, patch)
    stage_changed = (lead.status_id, lead.pipeline_id) != (before.status_id, before.pipeline_id)
    if stage_changed:
        if lead.status_id in CLOSED_STATUS_IDS and before.status_id not in CLOSED_STATUS_IDS:
            lead.closed_at = patch.get("closed_at", store.now())
        elif lead.status_id not in CLOSED_STATUS_IDS:
            lead.closed_at = None
    elif "closed_at" in patch and lead.status_id in CLOSED_STATUS_IDS:
        lead.closed_at = patch["closed_at"]
    links_changed = _apply_links(store, account, lead, patch, user_id)
    fields = (
        "name",
        "price",
        "responsible_user_id",
        "loss_reason_id",
        "custom_fields_values",
        "tag_ids",
        "closed_at",
    )
    if (
        not stage_changed
        and not links_changed
        and all(getattr(lead, f) == getattr(before, f) for f in fields)
    ):
        return False
    lead.updated_at = patch.get("updated_at", store.now())
    lead.updated_by = patch.get("updated_by", user_id)
    name_event(store, account, "lead", lead.id, user_id, before.name, lead.name)
    if lead.price != before.price:
        store.record_event(
            account,
            "sale_field_changed",
            "lead",
            lead.id,
            user_id,
            before=[{"sale_field_value": {"sale": before.price}}],
            after=[{"sale_field_value": {"sale": lead.price}}],
        )
    if stage_changed:
        store.record_event(
            account,
            "lead_status_changed",
            "lead",
            lead.id,
            user_id,
            before=[{"lead_status": {"id": before.status_id, "pipeline_id": before.pipeline_id}}],
            after=[{"lead_status": {"id": lead.status_id, "pipeline_id": lead.pipeline_id}}],
        )
    responsible_event(
        store, account, "lead", lead.id, user_id, before.responsible_user_id, lead.responsible_user_id
    )
    cf_events(
        store, account, "lead", lead.id, user_id, before.custom_fields_values, lead.custom_fields_values
    )
    tag_events(store, account, "lead", lead.id, user_id, before.tag_ids, lead.tag_ids)
    current = lead_repr(store, account, lead)
    if stage_changed:
        store.publish(account, "lead", "status", lead.id, current, previous, user_id)
    responsible_changed = lead.responsible_user_id != before.responsible_user_id
    if responsible_changed:
        store.publish(account, "lead", "responsible", lead.id, current, previous, user_id)
    if not stage_changed and not responsible_changed:
        store.publish(account, "lead", "update", lead.id, current, previous, user_id)
    return True


def leads_create(
    store: SandboxStore, account: Account, user_id: int, items: list[Any]
) -> list[tuple[Lead, str]]:

    def check(raw: Any) -> tuple[dict[str, Any], list[FieldError]]:
        patch, errors = validate_lead(account, raw, None)
        if isinstance(raw, dict):
            _validate_links(account, raw, errors, patch)
        return patch, errors

    planned = validated(items, check)
    return [(create_lead(store, account, patch, user_id), rid) for patch, rid in planned]


def leads_update(
    store: SandboxStore, account: Account, user_id: int, items: list[Any]
) -> list[tuple[Lead, str]]:
    """Batch update: every item needs an existing ``id``; nothing is written when any item fails."""

    def check(raw: dict[str, Any], lead: Lead) -> tuple[dict[str, Any], list[FieldError]]:
        patch, errors = validate_lead(account, raw, lead)
        _validate_links(account, raw, errors, patch)
        return patch, errors

    planned = validated_updates(items, account.leads, check)
    for lead, patch, _ in planned:
        update_lead(store, account, lead, patch, user_id)
    return [(lead, rid) for lead, _, rid in planned]


def move_lead(store: SandboxStore, account: Account, lead: Lead, status_id: int, user_id: int) -> bool:
    """Move a lead to another stage of its pipeline, as a person does on the board."""
    patch, errors = validate_lead(account, {"status_id": status_id, "pipeline_id": lead.pipeline_id}, lead)
    if errors:
        raise ApiError(400, f"Unknown stage {status_id}")
    return update_lead(store, account, lead, patch, user_id)


def set_deleted(store: SandboxStore, account: Account, lead: Lead, deleted: bool, user_id: int) -> bool:
    """Delete (restorably) or restore a lead; Kommo's REST API cannot, the admin API and the board can."""
    if lead.is_deleted == deleted:
        return False
    previous = lead_repr(store, account, lead)
    lead.is_deleted = deleted
    lead.updated_at = store.now()
    lead.updated_by = user_id
    store.record_event(
        account,
        "lead_deleted" if deleted else "lead_restored",
        "lead",
        lead.id,
        user_id,  # [] on both sides, as in Kommo
    )
    current = lead_repr(store, account, lead)
    store.publish(account, "lead", "delete" if deleted else "restore", lead.id, current, previous, user_id)
    return True


# --- /leads/complex -----------------------------------------------------------------------------------------


def _normalize_phone(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    return digits[-10:] if len(digits) >= 10 else digits


def contact_keys(account: Account, cf_values: list[dict[str, Any]]) -> set[str]:
    """E-mail and phone keys of a contact's values, for duplicate control."""
    keys = set()
    for item in cf_values:
        field = account.fields.get(item["field_id"])
        if field is None or field.code not in ("PHONE", "EMAIL"):
            continue
        for value in item["values"]:
            text = str(value.get("value", "")).strip()
            if not text:
                continue
            keys.add(f"email:{text.lower()}" if field.code == "EMAIL" else f"phone:{_normalize_phone(text)}")
    return keys


def _find_duplicate(account: Account, keys: set[str]) -> Contact | None:
    if not keys:
        return None
    for contact in account.contacts.values():
        if not contact.is_deleted and contact_keys(account, contact.custom_fields_values) & keys:
            return contact
    return None


def _open_lead_of(account: Account, contact: Contact) -> Lead | None:
    leads = [
        account.leads[lead_id]
        for lead_id in account.links.ids(("contacts", contact.id), "leads")
        if lead_id in account.leads
    ]
    open_leads = [lead for lead in leads if not lead.is_deleted and lead.status_id not in (142, 143)]
    return max(open_leads, key=lambda lead: lead.updated_at, default=None)


def _complex_item(account: Account, raw: Any) -> tuple[dict[str, Any], list[FieldError]]:
    patch, errors = validate_lead(account, raw, None, max_cf=COMPLEX_MAX_CF)
    if not isinstance(raw, dict):
        return patch, errors
    embedded = as_dict(raw.get("_embedded"))
    metadata = embedded.get("metadata")
    if isinstance(metadata, dict) and metadata.get("category") in ("forms", "sip"):
        pipeline = account.pipelines.get(patch.get("pipeline_id", 0)) or account.main_pipeline
        incoming = next((s for s in pipeline.statuses if s.type == 1), None)
        if incoming is not None:
            patch["pipeline_id"], patch["status_id"] = pipeline.id, incoming.id
    for kind in ("contacts", "companies"):
        entries = embedded.get(kind)
        if entries is None:
            continue
        if not isinstance(entries, list):
            errors.append(invalid_type(f"_embedded.{kind}", "array"))
            continue
        if len(entries) > 1:
            errors.append(too_many(f"_embedded.{kind}", 1))
            continue
        for entry in entries:
            records = account.contacts if kind == "contacts" else account.companies
            if isinstance(entry, dict) and "id" in entry:
                if not is_int(entry["id"]) or entry["id"] not in records:
                    errors.append(not_found_entity(f"_embedded.{kind}.0.id"))
                else:
                    patch[f"existing_{kind}"] = entry["id"]
                continue
            party_patch, party_errors = validate_party(account, kind, entry, None, max_cf=COMPLEX_MAX_CF)
            for error in party_errors:
                errors.append(
                    FieldError(error.code, f"_embedded.{kind}.0.{error.path}".rstrip("."), error.detail)
                )
            patch[f"new_{kind}"] = party_patch
    return patch, errors


def leads_complex(
    store: SandboxStore, account: Account, user_id: int, items: list[Any]
) -> list[dict[str, Any]]:
    """``POST /leads/complex``: a bare array ``[{id, contact_id, company_id, request_id, merged}]``."""
    if len(items) > COMPLEX_MAX_LEADS:
        raise limit_exceeded(COMPLEX_MAX_LEADS)
    planned = validated(items, lambda raw: _complex_item(account, raw))
    # Duplicate control compares new leads with what existed before this request, not with each other.
    duplicates: dict[int, Contact | None] = {}
    if account.duplicate_control:
        for index, (patch, _) in enumerate(planned):
            new_contact = patch.get("new_contacts")
            keys = (
                contact_keys(account, new_contact.get("custom_fields_values", [])) if new_contact else set()
            )
            duplicates[index] = _find_duplicate(account, keys)
    results: list[dict[str, Any]] = []
    by_lead: dict[int, dict[str, Any]] = {}
    for index, (patch, rid) in enumerate(planned):
        duplicate = duplicates.get(index)
        if duplicate is not None:
            existing_lead = _open_lead_of(account, duplicate)
            company_ids = account.links.ids(("contacts", duplicate.id), "companies")
            if existing_lead is not None:
                entry = by_lead.get(existing_lead.id)
                if entry is not None:
                    entry["request_id"].append(rid)
                    continue
                entry = {
                    "id": existing_lead.id,
                    "contact_id": duplicate.id,
                    "company_id": company_ids[0] if company_ids else None,
                    "request_id": [rid],
                    "merged": True,
                }
                by_lead[existing_lead.id] = entry
                results.append(entry)
                continue
            patch["existing_contacts"] = duplicate.id
            patch.pop("new_contacts", None)
        results.append(_create_complex(store, account, patch, rid, user_id, merged=duplicate is not None))
    return results


def _create_complex(
    store: SandboxStore, account: Account, patch: dict[str, Any], rid: str, user_id: int, merged: bool
) -> dict[str, Any]:
    contact_id = patch.get("existing_contacts")
    if "new_contacts" in patch:
        contact_id = create_party(store, account, "contacts", patch["new_contacts"], user_id).id
    company_id = patch.get("existing_companies")
    if "new_companies" in patch:
        company_id = create_party(store, account, "companies", patch["new_companies"], user_id).id
    if contact_id is not None:
        patch["contacts"] = [(contact_id, True)]
    if company_id is not None:
        patch["company_ids"] = [company_id]
    if contact_id is not None and company_id is not None:
        link_single(store, account, ("contacts", contact_id), ("companies", company_id), user_id)
    lead = create_lead(store, account, patch, user_id)
    return {
        "id": lead.id,
        "contact_id": contact_id,
        "company_id": company_id,
        "request_id": [rid],
        "merged": merged,
    }
