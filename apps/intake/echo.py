"""What intake wrote to Kommo, as the typed payloads Kommo would return: the mirror's copy until Kommo's own.

Kommo's write answers carry ids only (``POST /contacts``, ``/leads/complex``), so instead of reading the
new deal and contacts back, intake upserts them into the mirror from the data it sent plus the ids it got.
Such a payload has no Kommo timestamps (``updated_at`` is unknown, so the mirror's ``updated_at`` guard
lets the next webhook or sync replace it with Kommo's full version) and carries ``_portal_echo`` in its
``raw`` to say where it came from. Fields whose id the mirror does not know yet (the predefined EMAIL /
PHONE fields before the first custom-field sync) get ``field_id`` 0; they are found by their code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from apps.kommo import types

ECHO_KEY = "_portal_echo"
MULTITEXT = {"emails": ("EMAIL", "Email"), "phones": ("PHONE", "Phone")}


def multitext_value(kind: str, values: Sequence[str], field_ids: Mapping[str, int]) -> dict[str, Any]:
    """The read shape of the EMAIL (``kind`` "emails") or PHONE ("phones") field holding ``values``."""
    code, name = MULTITEXT[kind]
    return {
        "field_id": field_ids.get(code, 0),
        "field_name": name,
        "field_code": code,
        "field_type": "multitext",
        "values": [{"value": value, "enum_code": "WORK"} for value in values],
    }


def select_value(field_id: int, enum_id: int) -> dict[str, Any]:
    return {
        "field_id": field_id,
        "field_name": "",
        "field_code": None,
        "field_type": "select",
        "values": [{"value": None, "enum_id": enum_id}],
    }


def text_value(field_id: int, value: str) -> dict[str, Any]:
    return {
        "field_id": field_id,
        "field_name": "",
        "field_code": None,
        "field_type": "text",
        "values": [{"value": value}],
    }


def contact_echo(
    *,
    kommo_id: int,
    name: str,
    emails: Sequence[str],
    phones: Sequence[str],
    responsible_user_id: int | None,
    role: tuple[int, int] | None,
    company_id: int | None,
    field_ids: Mapping[str, int],
    submission_id: int,
) -> types.Contact:
    """A contact intake created; ``role`` is (field id, enum id) of the role written into it."""
    values = [
        multitext_value(kind, items, field_ids)
        for kind, items in (("emails", emails), ("phones", phones))
        if items
    ]
    if role is not None:
        values.append(select_value(*role))
    return types.Contact.from_api(
        {
            "id": kommo_id,
            "name": name,
            "first_name": "",
            "last_name": "",
            "responsible_user_id": responsible_user_id,
            "created_at": None,
            "updated_at": None,
            "is_deleted": False,
            "custom_fields_values": values or None,
            "_embedded": {"tags": [], "companies": [{"id": company_id}] if company_id else []},
            ECHO_KEY: {"submission_id": submission_id},
        }
    )


def contact_filled_echo(
    *,
    raw: Mapping[str, Any],
    added: Sequence[dict[str, Any]],
    updated_at: dt.datetime | None,
    submission_id: int,
) -> types.Contact:
    """An existing contact (its last payload, ``raw``) after intake filled its empty fields with ``added``
    (read-shape field values; a field already present is left as it is). ``updated_at`` is Kommo's answer
    to the update, or the payload's own when Kommo gave none."""
    data = dict(raw)
    values = list(data.get("custom_fields_values") or [])
    codes = {str(item.get("field_code") or "").upper() for item in values if isinstance(item, Mapping)}
    ids = {item.get("field_id") for item in values if isinstance(item, Mapping)}
    for item in added:
        code = str(item.get("field_code") or "").upper()
        if (code in codes) if code else (item["field_id"] in ids):
            continue
        values.append(item)
    data["custom_fields_values"] = values or None
    if updated_at is not None:
        data["updated_at"] = types.to_timestamp(updated_at)
    data[ECHO_KEY] = {"submission_id": submission_id}
    return types.Contact.from_api(data)


def company_echo(*, kommo_id: int, name: str, contact_id: int | None, submission_id: int) -> types.Company:
    return types.Company.from_api(
        {
            "id": kommo_id,
            "name": name,
            "created_at": None,
            "updated_at": None,
            "is_deleted": False,
            "custom_fields_values": None,
            "_embedded": {"tags": [], "contacts": [{"id": contact_id}] if contact_id else []},
            ECHO_KEY: {"submission_id": submission_id},
        }
    )


def lead_echo(
    *,
    kommo_id: int,
    deal: Mapping[str, Any],
    contacts: Sequence[tuple[int, bool]],
    company_id: int | None,
    elements: Sequence[tuple[int, int]],
    marker: tuple[int, str] | None,
    submission_id: int,
) -> types.Lead:
    """The deal intake created: ``deal`` is the normalised submission's (with pipeline and stage ids),
    ``contacts`` (id, is_main) pairs, ``elements`` (element id, catalog id) pairs, ``marker`` (field id,
    value). Tags are left out: Kommo's answer does not give their ids."""
    return types.Lead.from_api(
        {
            "id": kommo_id,
            "name": deal["name"],
            "price": deal["price"],
            "status_id": deal["status_id"],
            "pipeline_id": deal["pipeline_id"],
            "responsible_user_id": deal["responsible_user_id"],
            "created_at": None,
            "updated_at": None,
            "closed_at": None,
            "is_deleted": False,
            "custom_fields_values": [text_value(*marker)] if marker is not None else None,
            "_embedded": {
                "contacts": [{"id": contact_id, "is_main": is_main} for contact_id, is_main in contacts],
                "companies": [{"id": company_id}] if company_id else [],
                "catalog_elements": [
                    {"id": element_id, "metadata": {"quantity": 1, "catalog_id": catalog_id}}
                    for element_id, catalog_id in elements
                ],
            },
            ECHO_KEY: {"submission_id": submission_id},
        }
    )
