"""Custom field values: the write shapes Kommo accepts, the read shape it answers with (API.md §7)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from kommo_sandbox.entities import CfValues, CustomField
from kommo_sandbox.errors import FieldError, invalid_type, not_blank, not_supported_choice, too_many

FIELD_TYPES = (
    "text",
    "numeric",
    "checkbox",
    "select",
    "multiselect",
    "multitext",
    "date",
    "url",
    "textarea",
    "radiobutton",
    "streetaddress",
    "smart_address",
    "birthday",
    "legal_entity",
    "date_time",
    "items",
    "category",
    "price",
    "tracking_data",
    "linked_entity",
    "org_legal_name",
    "monetary",
    "chained_list",
    "file",
    "payer",
    "supplier",
)
ENUM_TYPES = ("select", "multiselect", "radiobutton", "category", "multitext", "smart_address")
SINGLE_ENUM_TYPES = ("select", "radiobutton", "category")
STRING_TYPES = ("text", "textarea", "streetaddress", "tracking_data", "url", "price", "org_legal_name")
NUMBER_TYPES = ("numeric", "monetary")
DATE_TYPES = ("date", "date_time", "birthday")
OBJECT_TYPES = ("legal_entity", "linked_entity", "file", "items", "payer", "supplier")

# API v2 numeric type codes, still used by events' ``custom_field_value.field_type``.
LEGACY_TYPE_CODES = {
    "text": 1,
    "numeric": 2,
    "checkbox": 3,
    "select": 4,
    "multiselect": 5,
    "date": 6,
    "url": 7,
    "multitext": 8,
    "textarea": 9,
    "radiobutton": 10,
    "streetaddress": 11,
    "smart_address": 13,
    "birthday": 14,
    "legal_entity": 15,
    "date_time": 19,
    "price": 20,
    "category": 21,
    "items": 22,
    "tracking_data": 23,
    "monetary": 24,
    "linked_entity": 25,
    "chained_list": 26,
    "file": 27,
}

PHONE_ENUM_CODES = ("WORK", "WORKDD", "MOB", "FAX", "HOME", "OTHER")
EMAIL_ENUM_CODES = ("WORK", "PRIV", "OTHER")


def _number_string(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    if not number.is_finite():
        return None
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def _timestamp(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
        except ValueError:
            return None
    return None


def _enum_value(
    field: CustomField, raw: dict[str, Any], path: str
) -> tuple[dict[str, Any] | None, FieldError]:
    """Resolve ``enum_id`` / ``enum_code`` / ``value`` (label) of a select-like value."""
    enum = None
    key = "value"
    if raw.get("enum_id") is not None:
        key, enum = "enum_id", field.enum_by_id(raw["enum_id"])
    elif raw.get("enum_code") is not None:
        key, enum = "enum_code", field.enum_by_code(raw["enum_code"])
    elif raw.get("value") is not None:
        enum = field.enum_by_value(raw["value"])
    if enum is None:
        return None, not_supported_choice(f"{path}.{key}")
    return {"value": enum.value, "enum_id": enum.id, "enum_code": enum.code}, not_blank(path)


def _multitext_value(
    field: CustomField, raw: dict[str, Any], path: str
) -> tuple[dict[str, Any] | None, FieldError]:
    value = raw.get("value")
    if not isinstance(value, str | int) or isinstance(value, bool) or str(value).strip() == "":
        return None, invalid_type(f"{path}.value", "string")
    if raw.get("enum_id") is not None:
        enum = field.enum_by_id(raw["enum_id"])
        bad = f"{path}.enum_id"
    elif raw.get("enum_code") is not None:
        enum = field.enum_by_code(raw["enum_code"])
        bad = f"{path}.enum_code"
    else:
        enum = field.enums[0] if field.enums else None
        bad = path
    if enum is None:
        return None, not_supported_choice(bad)
    code = enum.code or enum.value
    return {"value": str(value), "enum_id": enum.id, "enum_code": code}, not_blank(path)


def normalize_value(
    field: CustomField, raw: Any, path: str
) -> tuple[dict[str, Any] | None, FieldError | None]:
    """One written value → its stored (read) shape, or the error explaining why it is refused."""
    if not isinstance(raw, dict):
        return None, invalid_type(path, "array")
    kind = field.type
    if kind in SINGLE_ENUM_TYPES or kind == "multiselect":
        stored, error = _enum_value(field, raw, path)
        return stored, None if stored else error
    if kind in ("multitext", "smart_address"):
        stored, error = _multitext_value(field, raw, path)
        return stored, None if stored else error
    if kind == "chained_list":
        catalog_id, element_id = raw.get("catalog_id"), raw.get("catalog_element_id")
        if not isinstance(catalog_id, int) or not isinstance(element_id, int):
            return None, invalid_type(path, "int")
        return {"catalog_id": catalog_id, "catalog_element_id": element_id}, None
    value = raw.get("value")
    if kind in STRING_TYPES:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return None, invalid_type(f"{path}.value", "string")
        return {"value": str(value)}, None
    if kind in NUMBER_TYPES:
        number = _number_string(value)
        if number is None:
            return None, invalid_type(f"{path}.value", "numeric")
        return {"value": number}, None
    if kind == "checkbox":
        if not isinstance(value, bool):
            return None, invalid_type(f"{path}.value", "bool")
        return {"value": value}, None
    if kind in DATE_TYPES:
        stamp = _timestamp(value)
        if stamp is None:
            return None, invalid_type(f"{path}.value", "int")
        return {"value": stamp}, None
    if kind in OBJECT_TYPES:
        if not isinstance(value, dict | list):
            return None, invalid_type(f"{path}.value", "array")
        return {"value": value}, None
    return {"value": value}, None


def apply_values(
    fields: dict[int, CustomField],
    by_code: dict[str, CustomField],
    current: CfValues,
    written: Any,
    max_values: int | None = None,
) -> tuple[CfValues, list[FieldError]]:
    """Apply a ``custom_fields_values`` write to ``current``: sent fields are replaced whole, the others kept.

    ``values: null`` (or ``[]``) clears a field. Returns the new list and the errors.
    """
    if not isinstance(written, list):
        return current, [invalid_type("custom_fields_values", "array")]
    errors: list[FieldError] = []
    result = {item["field_id"]: item for item in current}
    if max_values is not None and len(written) > max_values:
        return current, [too_many("custom_fields_values", max_values)]
    for index, item in enumerate(written):
        path = f"custom_fields_values.{index}"
        if not isinstance(item, dict):
            errors.append(invalid_type(path, "array"))
            continue
        field = None
        if item.get("field_id") is not None:
            field = fields.get(item["field_id"]) if isinstance(item["field_id"], int) else None
            if field is None:
                errors.append(not_supported_choice(f"{path}.field_id"))
                continue
        elif item.get("field_code") is not None:
            field = by_code.get(str(item["field_code"]).upper())
            if field is None:
                errors.append(not_supported_choice(f"{path}.field_code"))
                continue
        else:
            errors.append(not_blank(f"{path}.field_id"))
            continue
        raw_values = item.get("values")
        if raw_values is None or raw_values == []:
            result.pop(field.id, None)
            continue
        if not isinstance(raw_values, list):
            errors.append(invalid_type(f"{path}.values", "array"))
            continue
        if field.type not in ("multiselect", "multitext", "smart_address", "chained_list", "items"):
            raw_values = raw_values[:1]
        stored_values = []
        for value_index, raw in enumerate(raw_values):
            stored, error = normalize_value(field, raw, f"{path}.values.{value_index}")
            if error is not None:
                errors.append(error)
            elif stored is not None:
                stored_values.append(stored)
        result[field.id] = {"field_id": field.id, "values": stored_values}
    if errors:
        return current, errors
    return list(result.values()), []


def read_shape(
    fields: dict[int, CustomField], values: CfValues, with_computed: bool = False
) -> list[dict[str, Any]] | None:
    """Stored values → ``custom_fields_values`` as GET returns them (``None`` when empty, as Kommo does)."""
    out = []
    for item in values:
        field = fields.get(item["field_id"])
        if field is None:
            continue
        entry: dict[str, Any] = {
            "field_id": field.id,
            "field_name": field.name,
            "field_code": field.code,
            "field_type": field.type,
            "values": [dict(v) for v in item["values"]],
        }
        if with_computed:
            entry["is_computed"] = False
        out.append(entry)
    return out or None


def value_text(value: dict[str, Any]) -> str:
    """A value as plain text, for search and for events' ``custom_field_value.text``."""
    raw = value.get("value")
    if raw is None and "catalog_element_id" in value:
        return str(value["catalog_element_id"])
    if isinstance(raw, bool):
        return "1" if raw else "0"
    if isinstance(raw, dict):
        return str(raw.get("name", ""))
    return "" if raw is None else str(raw)


def event_values(field: CustomField, values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``value_before`` / ``value_after`` items of a ``custom_field_value_changed`` event."""
    return [
        {
            "custom_field_value": {
                "field_id": field.id,
                "field_type": LEGACY_TYPE_CODES.get(field.type, 1),
                "enum_id": value.get("enum_id"),
                "text": value_text(value),
            }
        }
        for value in values
    ]
