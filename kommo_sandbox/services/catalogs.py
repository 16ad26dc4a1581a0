"""Catalogs (lists), their elements, and links between entities (API.md §9)."""

from __future__ import annotations

from typing import Any

from kommo_sandbox import representations
from kommo_sandbox.entities import Catalog, CatalogElement
from kommo_sandbox.errors import (
    ApiError,
    Collector,
    FieldError,
    invalid_type,
    not_blank,
    not_found_entity,
    not_supported_choice,
)
from kommo_sandbox.fields import apply_values
from kommo_sandbox.http import as_dict
from kommo_sandbox.services.common import (
    cf_events,
    check_str,
    is_int,
    link_contact_to_lead,
    link_events,
    link_single,
    name_event,
    request_id_of,
    validated_updates,
)
from kommo_sandbox.services.leads import lead_repr
from kommo_sandbox.store import Account, SandboxStore

MAX_CATALOGS = 10
LINKABLE = ("leads", "contacts", "companies")
LINK_TARGETS = ("leads", "contacts", "companies", "catalog_elements")


def catalogs_create(
    store: SandboxStore, account: Account, user_id: int, items: list[Any]
) -> list[tuple[Catalog, str]]:
    collector = Collector()
    planned = []
    for index, raw in enumerate(items):
        errors: list[FieldError] = []
        patch: dict[str, Any] = {}
        if not isinstance(raw, dict):
            errors.append(invalid_type("", "array"))
        else:
            check_str(raw, "name", errors, patch)
            if not patch.get("name"):
                errors.append(not_blank("name"))
            kind = raw.get("type", "regular")
            if kind not in ("regular", "products"):
                errors.append(not_supported_choice("type"))
            elif kind == "products" and any(c.type == "products" for c in account.catalogs.values()):
                errors.append(not_supported_choice("type"))
            patch["type"] = kind
            for key in ("can_add_elements", "can_link_multiple"):
                if isinstance(raw.get(key), bool):
                    patch[key] = raw[key]
            if is_int(raw.get("sort")):
                patch["sort"] = raw["sort"]
        collector.add(request_id_of(raw, index), errors)
        planned.append((patch, request_id_of(raw, index)))
    collector.raise_if_any()
    if len(account.catalogs) + len(planned) > MAX_CATALOGS:
        raise ApiError(400, f"Maximum {MAX_CATALOGS} lists per account")
    created = []
    for patch, rid in planned:
        now = store.now()
        catalog = Catalog(
            id=store.next_id("catalog"),
            name=patch["name"],
            type=patch["type"],
            sort=patch.get("sort", 10),
            created_by=user_id,
            updated_by=user_id,
            created_at=now,
            updated_at=now,
            can_add_elements=patch.get("can_add_elements", True),
            can_link_multiple=patch.get("can_link_multiple", True),
        )
        account.catalogs[catalog.id] = catalog
        created.append((catalog, rid))
    store.touch()
    return created


def catalog_update(store: SandboxStore, account: Account, catalog: Catalog, raw: Any, user_id: int) -> None:
    if not isinstance(raw, dict):
        raise ApiError(400, "Request data can not be empty")
    errors: list[FieldError] = []
    patch: dict[str, Any] = {}
    check_str(raw, "name", errors, patch)
    if errors:
        collector = Collector()
        collector.add("0", errors)
        collector.raise_if_any()
    if "name" in patch:
        catalog.name = patch["name"]
    for key in ("can_add_elements", "can_link_multiple", "sort"):
        if key in raw:
            setattr(catalog, key, raw[key])
    catalog.updated_at = store.now()
    catalog.updated_by = user_id
    store.touch()


def element_repr(store: SandboxStore, account: Account, element: CatalogElement) -> dict[str, Any]:
    return representations.element(account, store.public_origin(account), element)


def _validate_element(
    account: Account, catalog: Catalog, raw: Any, existing: CatalogElement | None
) -> tuple[dict[str, Any], list[FieldError]]:
    if not isinstance(raw, dict):
        return {}, [invalid_type("", "array")]
    errors: list[FieldError] = []
    patch: dict[str, Any] = {}
    check_str(raw, "name", errors, patch)
    if existing is None and not patch.get("name"):
        errors.append(not_blank("name"))
    if "custom_fields_values" in raw:
        values, cf_errors = apply_values(
            account.fields_for("catalogs", catalog.id),
            account.field_codes_for("catalogs", catalog.id),
            existing.custom_fields_values if existing else [],
            raw["custom_fields_values"],
        )
        errors.extend(cf_errors)
        patch["custom_fields_values"] = values
    return patch, errors


def elements_create(
    store: SandboxStore, account: Account, catalog: Catalog, user_id: int, items: list[Any]
) -> list[tuple[CatalogElement, Any]]:
    collector = Collector()
    planned = []
    for index, raw in enumerate(items):
        patch, errors = _validate_element(account, catalog, raw, None)
        collector.add(request_id_of(raw, index), errors)
        # The element response echoes request_id as sent, or the position as an integer.
        request_id = raw.get("request_id", index) if isinstance(raw, dict) else index
        planned.append((patch, request_id))
    collector.raise_if_any()
    created = []
    for patch, request_id in planned:
        now = store.now()
        element = CatalogElement(
            id=store.next_id("element"),
            catalog_id=catalog.id,
            name=patch["name"],
            created_by=user_id,
            updated_by=user_id,
            created_at=now,
            updated_at=now,
            custom_fields_values=patch.get("custom_fields_values", []),
        )
        account.elements[element.id] = element
        store.record_event(account, "catalog_element_added", f"catalog_{catalog.id}", element.id, user_id)
        store.publish(
            account,
            "catalog_element",
            "add",
            element.id,
            element_repr(store, account, element),
            None,
            user_id,
        )
        created.append((element, request_id))
    return created


def elements_update(
    store: SandboxStore, account: Account, catalog: Catalog, user_id: int, items: list[Any]
) -> list[tuple[CatalogElement, str]]:
    elements = {e.id: e for e in account.elements.values() if e.catalog_id == catalog.id}
    planned = validated_updates(
        items, elements, lambda raw, element: _validate_element(account, catalog, raw, element)
    )
    for element, patch, _ in planned:
        previous = element_repr(store, account, element)
        before_name, before_cf = element.name, element.custom_fields_values
        element.name = patch.get("name", element.name)
        element.custom_fields_values = patch.get("custom_fields_values", element.custom_fields_values)
        if (element.name, element.custom_fields_values) == (before_name, before_cf):
            continue
        element.updated_at = store.now()
        element.updated_by = user_id
        entity = f"catalog_{catalog.id}"
        name_event(store, account, entity, element.id, user_id, before_name, element.name)
        cf_events(store, account, entity, element.id, user_id, before_cf, element.custom_fields_values)
        current = element_repr(store, account, element)
        store.publish(account, "catalog_element", "update", element.id, current, previous, user_id)
    return [(element, rid) for element, _, rid in planned]


# --- links --------------------------------------------------------------------------------------------------


def _check_link(
    account: Account, raw: Any, path: str, needs_source: bool
) -> tuple[dict[str, Any], list[FieldError]]:
    if not isinstance(raw, dict):
        return {}, [invalid_type(path or "", "array")]
    errors: list[FieldError] = []
    link: dict[str, Any] = {}
    if needs_source:
        kind, entity_id = raw.get("entity_type"), raw.get("entity_id")
        if kind not in LINKABLE:
            errors.append(not_supported_choice("entity_type"))
        elif not is_int(entity_id) or entity_id not in getattr(account, kind):
            errors.append(not_found_entity("entity_id"))
        else:
            link["entity"] = (kind, entity_id)
    to_type, to_id = raw.get("to_entity_type"), raw.get("to_entity_id")
    metadata = as_dict(raw.get("metadata"))
    if to_type not in LINK_TARGETS:
        errors.append(not_supported_choice("to_entity_type"))
        return link, errors
    if to_type == "catalog_elements":
        catalog_id = metadata.get("catalog_id")
        if not is_int(catalog_id) or catalog_id not in account.catalogs:
            errors.append(not_supported_choice("metadata.catalog_id"))
            return link, errors
        element = account.elements.get(to_id) if is_int(to_id) else None
        if element is None or element.catalog_id != catalog_id:
            errors.append(not_found_entity("to_entity_id"))
            return link, errors
        quantity = metadata.get("quantity", 1)
        link["metadata"] = {"quantity": quantity, "catalog_id": catalog_id}
    elif not is_int(to_id) or to_id not in getattr(account, to_type):
        errors.append(not_found_entity("to_entity_id"))
        return link, errors
    elif to_type == "contacts":
        link["is_main"] = bool(metadata.get("is_main"))
    link["to"] = (to_type, to_id)
    return link, errors


def _checked_links(
    account: Account, items: list[Any], source: tuple[str, int] | None
) -> list[dict[str, Any]]:
    """Check every link of a (un)link batch; the checked links, or 400 for the whole batch."""
    collector = Collector()
    planned = []
    for index, raw in enumerate(items):
        link, errors = _check_link(account, raw, "", needs_source=source is None)
        collector.add(str(index), errors)
        planned.append(link)
    collector.raise_if_any()
    return planned


def response_metadata(account: Account, a: tuple[str, int], b: tuple[str, int]) -> dict[str, Any] | None:
    meta = account.links.metadata(a, b)
    if (b[0] == "contacts" and a[0] == "leads") or (a[0] == "contacts" and b[0] == "leads"):
        return {"main_contact": bool((meta or {}).get("main_contact"))}
    if "catalog_elements" in (a[0], b[0]):
        return dict(meta or {})
    return None


def link_entities(
    store: SandboxStore, account: Account, user_id: int, items: list[Any], source: tuple[str, int] | None
) -> list[dict[str, Any]]:
    """``POST /{entity}/{id}/link`` (``source`` given) or the mass ``POST /leads/link``."""
    planned = _checked_links(account, items, source)
    results = []
    touched: set[tuple[str, int]] = set()
    previous = _lead_snapshots(store, account, planned, source)
    for link in planned:
        a = source or link["entity"]
        b = link["to"]
        changed = _link_one(store, account, a, b, link, user_id)
        if changed:
            touched.update(k for k in (a, b) if k[0] == "leads")
        results.append(
            {
                "entity_id": a[1],
                "entity_type": a[0],
                "to_entity_id": b[1],
                "to_entity_type": b[0],
                "metadata": response_metadata(account, a, b),
            }
        )
    _publish_lead_updates(store, account, touched, previous, user_id)
    return results


def _link_one(
    store: SandboxStore,
    account: Account,
    a: tuple[str, int],
    b: tuple[str, int],
    link: dict[str, Any],
    user_id: int,
) -> bool:
    kinds = {a[0], b[0]}
    if kinds == {"leads", "contacts"}:
        lead, contact = (a, b) if a[0] == "leads" else (b, a)
        return link_contact_to_lead(store, account, lead[1], contact[1], link.get("is_main", False), user_id)
    if "companies" in kinds and kinds & {"leads", "contacts"}:
        owner, company = (a, b) if b[0] == "companies" else (b, a)
        return link_single(store, account, owner, company, user_id)
    if account.links.is_linked(a, b):
        existing = account.links.metadata(a, b)
        if existing is not None and "metadata" in link:
            existing.update(link["metadata"])
        return False
    account.links.link(a, b, link.get("metadata"))
    link_events(store, account, a, b, user_id, linked=True)
    return True


def unlink_entities(
    store: SandboxStore, account: Account, user_id: int, items: list[Any], source: tuple[str, int] | None
) -> None:
    planned = _checked_links(account, items, source)
    touched: set[tuple[str, int]] = set()
    previous = _lead_snapshots(store, account, planned, source)
    for link in planned:
        a = source or link["entity"]
        b = link["to"]
        if account.links.unlink(a, b):
            link_events(store, account, a, b, user_id, linked=False)
            touched.update(k for k in (a, b) if k[0] == "leads")
    _publish_lead_updates(store, account, touched, previous, user_id)


def _lead_snapshots(
    store: SandboxStore, account: Account, planned: list[dict[str, Any]], source: tuple[str, int] | None
) -> dict[int, dict[str, Any]]:
    keys = {k for link in planned for k in (source or link["entity"], link["to"]) if k[0] == "leads"}
    return {lead_id: lead_repr(store, account, account.leads[lead_id]) for _, lead_id in keys}


def _publish_lead_updates(
    store: SandboxStore,
    account: Account,
    leads: set[tuple[str, int]],
    previous: dict[int, dict[str, Any]],
    user_id: int,
) -> None:
    """A link change is a change of the lead's ``_embedded``: publish it as an update."""
    for _, lead_id in sorted(leads):
        lead = account.leads[lead_id]
        lead.updated_at = store.now()
        lead.updated_by = user_id
        current = lead_repr(store, account, lead)
        store.publish(account, "lead", "update", lead.id, current, previous.get(lead_id), user_id)
