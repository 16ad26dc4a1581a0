"""Records → Kommo API v4 JSON, field for field as in ``samples/``.

``origin`` is the scheme and host the client reached (``http://127.0.0.1:8000``): every ``_links.self``
must be followable against the sandbox.
"""

from __future__ import annotations

from typing import Any

from kommo_sandbox.entities import (
    Catalog,
    CatalogElement,
    Company,
    Contact,
    CustomField,
    Event,
    Lead,
    Note,
    Pipeline,
    Status,
    Task,
    User,
    WebhookRecord,
)
from kommo_sandbox.fields import read_shape
from kommo_sandbox.store import Account


def links(origin: str, path: str) -> dict[str, Any]:
    return {"self": {"href": f"{origin}{path}"}}


def ref(origin: str, kind: str, entity_id: int) -> dict[str, Any]:
    return {"id": entity_id, "_links": links(origin, f"/api/v4/{kind}/{entity_id}")}


def tags(account: Account, tag_ids: list[int]) -> list[dict[str, Any]]:
    return [
        {"id": t.id, "name": t.name, "color": t.color}
        for t in (account.tags.get(tag_id) for tag_id in tag_ids)
        if t is not None
    ]


def _catalog_elements(account: Account, key: tuple[str, int]) -> list[dict[str, Any]]:
    out = []
    for (_, element_id), meta in account.links.linked(key, "catalog_elements"):
        meta = meta or {}
        out.append(
            {
                "id": element_id,
                "metadata": {"quantity": meta.get("quantity", 1), "catalog_id": meta.get("catalog_id")},
            }
        )
    return out


def lead(
    account: Account, origin: str, item: Lead, with_: set[str] | frozenset[str] = frozenset()
) -> dict[str, Any]:
    key = ("leads", item.id)
    data: dict[str, Any] = {
        "id": item.id,
        "name": item.name,
        "price": item.price,
        "responsible_user_id": item.responsible_user_id,
        "group_id": item.group_id,
        "status_id": item.status_id,
        "pipeline_id": item.pipeline_id,
        "loss_reason_id": item.loss_reason_id,
        "created_by": item.created_by,
        "updated_by": item.updated_by,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
        "closed_at": item.closed_at,
        "closest_task_at": item.closest_task_at,
        "is_deleted": item.is_deleted,
        "custom_fields_values": read_shape(account.fields, item.custom_fields_values, with_computed=True),
        "score": item.score,
        "account_id": account.id,
        "labor_cost": item.labor_cost,
        "is_price_computed": False,
    }
    if "source_id" in with_:
        data["source_id"] = item.source_id
    if "is_price_modified_by_robot" in with_:
        data["is_price_modified_by_robot"] = False
    data["_links"] = links(origin, f"/api/v4/leads/{item.id}")
    embedded: dict[str, Any] = {
        "tags": tags(account, item.tag_ids),
        "companies": [ref(origin, "companies", cid) for cid in account.links.ids(key, "companies")[:1]],
    }
    if "contacts" in with_:
        contacts = account.links.linked(key, "contacts")
        contacts.sort(key=lambda pair: not (pair[1] or {}).get("main_contact", False))
        embedded["contacts"] = [
            {**ref(origin, "contacts", cid), "is_main": bool((meta or {}).get("main_contact"))}
            for (_, cid), meta in contacts
        ]
        for contact in embedded["contacts"]:  # keep Kommo's key order: id, is_main, _links
            contact["_links"] = contact.pop("_links")
    if "catalog_elements" in with_:
        embedded["catalog_elements"] = _catalog_elements(account, key)
    if "loss_reason" in with_ and item.loss_reason_id in account.loss_reasons:
        reason = account.loss_reasons[item.loss_reason_id]
        embedded["loss_reason"] = [
            {
                "id": reason.id,
                "name": reason.name,
                "sort": reason.sort,
                "created_at": reason.created_at,
                "updated_at": reason.updated_at,
                "_links": links(origin, f"/api/v4/leads/loss_reasons/{reason.id}"),
            }
        ]
    data["_embedded"] = embedded
    return data


def deleted_lead(origin: str, item: Lead) -> dict[str, Any]:
    """``with=only_deleted``: only the id, the modification date and ``is_deleted``."""
    return {
        "id": item.id,
        "updated_at": item.updated_at,
        "is_deleted": True,
        "_links": links(origin, f"/api/v4/leads/{item.id}"),
    }


def contact(
    account: Account, origin: str, item: Contact, with_: set[str] | frozenset[str] = frozenset()
) -> dict[str, Any]:
    key = ("contacts", item.id)
    data: dict[str, Any] = {
        "id": item.id,
        "name": item.name,
        "first_name": item.first_name,
        "last_name": item.last_name,
        "responsible_user_id": item.responsible_user_id,
        "group_id": item.group_id,
        "created_by": item.created_by,
        "updated_by": item.updated_by,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
        "closest_task_at": item.closest_task_at,
        "is_deleted": item.is_deleted,
        "is_unsorted": item.is_unsorted,
        "custom_fields_values": read_shape(account.fields, item.custom_fields_values),
        "account_id": account.id,
        "_links": links(origin, f"/api/v4/contacts/{item.id}"),
    }
    embedded: dict[str, Any] = {"tags": tags(account, item.tag_ids)}
    if "leads" in with_:
        embedded["leads"] = [ref(origin, "leads", lid) for lid in account.links.ids(key, "leads")]
    if "customers" in with_:
        embedded["customers"] = []
    if "catalog_elements" in with_:
        embedded["catalog_elements"] = _catalog_elements(account, key)
    embedded["companies"] = [ref(origin, "companies", cid) for cid in account.links.ids(key, "companies")[:1]]
    data["_embedded"] = embedded
    return data


def company(
    account: Account, origin: str, item: Company, with_: set[str] | frozenset[str] = frozenset()
) -> dict[str, Any]:
    key = ("companies", item.id)
    data: dict[str, Any] = {
        "id": item.id,
        "name": item.name,
        "responsible_user_id": item.responsible_user_id,
        "group_id": item.group_id,
        "created_by": item.created_by,
        "updated_by": item.updated_by,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
        "closest_task_at": item.closest_task_at,
        "is_deleted": item.is_deleted,
        "custom_fields_values": read_shape(account.fields, item.custom_fields_values),
        "account_id": account.id,
        "_links": links(origin, f"/api/v4/companies/{item.id}"),
    }
    embedded: dict[str, Any] = {"tags": tags(account, item.tag_ids)}
    if "leads" in with_:
        embedded["leads"] = [ref(origin, "leads", lid) for lid in account.links.ids(key, "leads")]
    if "contacts" in with_:
        embedded["contacts"] = [ref(origin, "contacts", cid) for cid in account.links.ids(key, "contacts")]
    if "customers" in with_:
        embedded["customers"] = []
    if "catalog_elements" in with_:
        embedded["catalog_elements"] = _catalog_elements(account, key)
    data["_embedded"] = embedded
    return data


def task(account: Account, origin: str, item: Task) -> dict[str, Any]:
    return {
        "id": item.id,
        "created_by": item.created_by,
        "updated_by": item.updated_by,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
        "responsible_user_id": item.responsible_user_id,
        "group_id": item.group_id,
        "entity_id": item.entity_id,
        "entity_type": item.entity_type,
        "duration": item.duration,
        "is_completed": item.is_completed,
        "task_type_id": item.task_type_id,
        "text": item.text,
        "result": item.result if item.result else [],
        "complete_till": item.complete_till,
        "account_id": account.id,
        "_links": links(origin, f"/api/v4/tasks/{item.id}"),
    }


def note(account: Account, origin: str, item: Note) -> dict[str, Any]:
    return {
        "id": item.id,
        "entity_id": item.entity_id,
        "created_by": item.created_by,
        "updated_by": item.updated_by,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
        "responsible_user_id": item.responsible_user_id,
        "group_id": item.group_id,
        "note_type": item.note_type,
        "params": dict(item.params),
        "account_id": account.id,
        "_links": links(origin, f"/api/v4/{item.entity_type}/{item.entity_id}/notes/{item.id}"),
    }


def catalog(account: Account, origin: str, item: Catalog) -> dict[str, Any]:
    return {
        "id": item.id,
        "name": item.name,
        "created_by": item.created_by,
        "updated_by": item.updated_by,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
        "sort": item.sort,
        "type": item.type,
        "can_add_elements": item.can_add_elements,
        "can_show_in_cards": item.can_show_in_cards,
        "can_link_multiple": item.can_link_multiple,
        "can_be_deleted": item.can_be_deleted,
        "sdk_widget_code": item.sdk_widget_code,
        "account_id": account.id,
        "_links": links(origin, f"/api/v4/catalogs/{item.id}"),
    }


def element(account: Account, origin: str, item: CatalogElement) -> dict[str, Any]:
    return {
        "id": item.id,
        "name": item.name,
        "created_by": item.created_by,
        "updated_by": item.updated_by,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
        "is_deleted": item.is_deleted,
        "custom_fields_values": read_shape(account.fields, item.custom_fields_values),
        "catalog_id": item.catalog_id,
        "account_id": account.id,
        "_links": links(origin, f"/api/v4/catalogs/{item.catalog_id}/elements/{item.id}"),
    }


def custom_field(account: Account, origin: str, item: CustomField) -> dict[str, Any]:
    base = (
        f"/api/v4/catalogs/{item.catalog_id}"
        if item.entity_type == "catalogs"
        else f"/api/v4/{item.entity_type}"
    )
    data: dict[str, Any] = {
        "id": item.id,
        "name": item.name,
        "type": item.type,
        "account_id": account.id,
        "code": item.code,
        "sort": item.sort,
        "is_api_only": item.is_api_only,
        "enums": (
            [
                {"id": e.id, "value": e.value, "sort": e.sort, **({"code": e.code} if e.code else {})}
                for e in item.enums
            ]
            if item.enums is not None
            else None
        ),
        "group_id": item.group_id,
        "required_statuses": [dict(s) for s in item.required_statuses],
        "is_deletable": item.is_deletable,
        "is_predefined": item.is_predefined,
        "entity_type": item.entity_type,
        "tracking_callback": item.tracking_callback,
        "remind": item.remind,
        "triggers": [],
        "currency": item.currency,
        "hidden_statuses": [dict(s) for s in item.hidden_statuses],
        "chained_lists": item.chained_lists,
        "search_in": item.search_in,
        "settings": item.settings,
    }
    if item.entity_type == "catalogs":
        data["catalog_id"] = item.catalog_id
        data["is_visible"] = item.is_visible
        data["is_required"] = item.is_required
    data["_links"] = links(origin, f"{base}/custom_fields/{item.id}")
    return data


def status(
    account: Account, origin: str, item: Status, with_: set[str] | frozenset[str] = frozenset()
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": item.id,
        "name": item.name,
        "sort": item.sort,
        "is_editable": item.is_editable,
        "pipeline_id": item.pipeline_id,
        "color": item.color,
        "type": item.type,
        "account_id": account.id,
        "_links": links(origin, f"/api/v4/leads/pipelines/{item.pipeline_id}/statuses/{item.id}"),
    }
    if "descriptions" in with_:
        data["descriptions"] = []
    return data


def pipeline(
    account: Account, origin: str, item: Pipeline, with_: set[str] | frozenset[str] = frozenset()
) -> dict[str, Any]:
    return {
        "id": item.id,
        "name": item.name,
        "sort": item.sort,
        "is_main": item.is_main,
        "is_unsorted_on": item.is_unsorted_on,
        "is_archive": item.is_archive,
        "account_id": account.id,
        "_links": links(origin, f"/api/v4/leads/pipelines/{item.id}"),
        "_embedded": {"statuses": [status(account, origin, s, with_) for s in item.ordered_statuses()]},
    }


def _rights(user: User, account: Account) -> dict[str, Any]:
    level = "A" if user.is_admin else "M"
    entity_rights = {"view": "A", "edit": level, "add": "A", "delete": level, "export": level}
    return {
        "leads": dict(entity_rights),
        "contacts": dict(entity_rights),
        "companies": dict(entity_rights),
        "tasks": {"edit": level, "delete": level},
        "mail_access": user.is_admin,
        "catalog_access": True,
        "status_rights": [
            {
                "entity_type": "leads",
                "pipeline_id": p.id,
                "status_id": s.id,
                "rights": {"view": "A", "edit": level, "delete": level},
            }
            for p in account.pipelines.values()
            for s in p.ordered_statuses()
            if s.type == 0
        ],
        "is_admin": user.is_admin,
        "is_free": False,
        "is_active": user.is_active,
        "group_id": user.group_id,
        "role_id": user.role_id,
    }


def user(
    account: Account, origin: str, item: User, with_: set[str] | frozenset[str] = frozenset()
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": item.id,
        "name": item.name,
        "email": item.email,
        "lang": item.lang,
        "rights": _rights(item, account),
        "_links": links(origin, f"/api/v4/users/{item.id}"),
    }
    embedded: dict[str, Any] = {}
    if "role" in with_:
        role = account.roles.get(item.role_id) if item.role_id else None
        embedded["roles"] = (
            [{"id": role.id, "name": role.name, "_links": links(origin, f"/api/v4/roles/{role.id}")}]
            if role
            else []
        )
    if "group" in with_:
        group = account.groups.get(item.group_id) if item.group_id else None
        embedded["groups"] = [{"id": group.id, "name": group.name}] if group else []
    if "uuid" in with_:
        data["uuid"] = f"00000000-0000-4000-8000-{item.id:012d}"
    if "amojo_id" in with_:
        data["amojo_id"] = f"10000000-0000-4000-8000-{item.id:012d}"
    if "user_rank" in with_:
        data["user_rank"] = "newbie"
    if "phone_number" in with_:
        data["phone_number"] = item.phone_number
    if embedded:
        data["_embedded"] = embedded
    return data


def event(account: Account, origin: str, item: Event) -> dict[str, Any]:
    return {
        "id": item.id,
        "type": item.type,
        "entity_id": item.entity_id,
        "entity_type": item.entity_type,
        "created_by": item.created_by,
        "created_at": item.created_at,
        "value_after": item.value_after,
        "value_before": item.value_before,
        "account_id": account.id,
        "_links": links(origin, f"/api/v4/events/{item.id}"),
        "_embedded": {"entity": {"id": item.entity_id}},
    }


def webhook(account: Account, item: WebhookRecord) -> dict[str, Any]:
    return {
        "id": item.id,
        "destination": item.destination,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
        "account_id": account.id,
        "created_by": item.created_by,
        "sort": item.sort,
        "disabled": item.disabled,
        "settings": list(item.settings),
    }
