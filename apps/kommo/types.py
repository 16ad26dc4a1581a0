"""Typed Kommo payloads: what the client returns and what it sends.

Reads are frozen dataclasses built by ``from_api(payload)``; they tolerate keys they do not know, turn
Kommo's unix timestamps into aware UTC datetimes, and keep the whole payload in ``raw`` for the mirror.
Writes are frozen dataclasses with ``to_api()``, which leaves out every field that was not set (Kommo
treats an omitted field as "unchanged"). Nothing past the client handles a raw response dict.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Self

from apps.kommo.exceptions import KommoPayloadError

JSON = dict[str, Any]

WON_STATUS_ID = 142
LOST_STATUS_ID = 143


# -- reading helpers ------------------------------------------------------------------------------------


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise KommoPayloadError(f"{what}: expected an object, got {type(value).__name__}")
    return value


def _required(data: Mapping[str, Any], key: str) -> Any:
    if data.get(key) is None:
        raise KommoPayloadError(f"missing {key!r} in {sorted(data)[:12]}")
    return data[key]


def _to_int(value: Any, key: str) -> int:
    if isinstance(value, bool):
        raise KommoPayloadError(f"{key!r}: expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise KommoPayloadError(f"{key!r}: expected an integer, got {value!r}")


def _int(data: Mapping[str, Any], key: str) -> int:
    return _to_int(_required(data, key), key)


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return None if value is None or value == "" else _to_int(value, key)


def _str(data: Mapping[str, Any], key: str, default: str = "") -> str:
    value = data.get(key)
    return default if value is None else str(value)


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


def _bool(data: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = data.get(key)
    if value is None:
        return default
    return to_bool(value)


def to_bool(value: Any) -> bool:
    """Kommo's booleans: JSON true/false, and "1"/"0" or 1/0 in older payloads."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "y", "yes", "on"}
    return bool(value)


def from_timestamp(value: Any) -> dt.datetime | None:
    """A unix timestamp (int, float or numeric string), an RFC 3339 string or dd.mm.YYYY → aware UTC."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    if isinstance(value, str):
        text = value.strip()
        try:
            return dt.datetime.fromtimestamp(float(text), tz=dt.UTC)
        except ValueError:
            pass
        for parse in (dt.datetime.fromisoformat, lambda s: dt.datetime.strptime(s, "%d.%m.%Y")):
            try:
                moment = parse(text)
            except ValueError:
                continue
            return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    raise KommoPayloadError(f"not a timestamp: {value!r}")


def to_timestamp(moment: dt.datetime) -> int:
    """An aware datetime → unix seconds, as Kommo expects in writes and filters."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: Kommo timestamps need a time zone")
    return int(moment.timestamp())


def _ts(data: Mapping[str, Any], key: str) -> dt.datetime | None:
    return from_timestamp(data.get(key))


def _opt_decimal(data: Mapping[str, Any], key: str) -> Decimal | None:
    """A finite number (``metadata.quantity``), sent as a number or its text; None when missing."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise KommoPayloadError(f"{key!r}: expected a number, got a boolean")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise KommoPayloadError(f"{key!r}: expected a number, got {value!r}") from exc
    if not number.is_finite():
        raise KommoPayloadError(f"{key!r}: expected a finite number, got {value!r}")
    return number


def _object(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """The nested object under ``key`` (``_embedded``, ``metadata``, ``rights``, ``params``), or an empty
    one when it is missing or not an object."""
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def _embedded_list(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = _object(data, "_embedded").get(key)
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _ids(items: Iterable[Mapping[str, Any]]) -> tuple[int, ...]:
    return tuple(_int(item, "id") for item in items)


# -- custom field values (read) -------------------------------------------------------------------------


class CustomFieldType(StrEnum):
    """Every custom field type Kommo documents (API.md §7). A plain ``str`` compares equal to a member."""

    TEXT = "text"
    NUMERIC = "numeric"
    CHECKBOX = "checkbox"
    SELECT = "select"
    MULTISELECT = "multiselect"
    MULTITEXT = "multitext"
    DATE = "date"
    URL = "url"
    TEXTAREA = "textarea"
    RADIOBUTTON = "radiobutton"
    STREETADDRESS = "streetaddress"
    SMART_ADDRESS = "smart_address"
    BIRTHDAY = "birthday"
    LEGAL_ENTITY = "legal_entity"
    DATE_TIME = "date_time"
    ITEMS = "items"
    CATEGORY = "category"
    PRICE = "price"
    TRACKING_DATA = "tracking_data"
    LINKED_ENTITY = "linked_entity"
    ORG_LEGAL_NAME = "org_legal_name"
    MONETARY = "monetary"
    CHAINED_LIST = "chained_list"
    FILE = "file"
    PAYER = "payer"
    SUPPLIER = "supplier"


DATE_TYPES = frozenset({CustomFieldType.DATE, CustomFieldType.DATE_TIME, CustomFieldType.BIRTHDAY})
NUMBER_TYPES = frozenset({CustomFieldType.NUMERIC, CustomFieldType.MONETARY})

FieldScalar = str | int | bool | Decimal | dt.datetime | dict[str, Any] | None


def _typed_value(field_type: str, value: Any) -> FieldScalar:
    if value is None:
        return None
    if field_type in DATE_TYPES:
        return from_timestamp(value)
    if field_type in NUMBER_TYPES:
        if isinstance(value, bool):
            raise KommoPayloadError(f"numeric field value is a boolean: {value!r}")
        try:
            return Decimal(str(value).strip().replace(",", "."))
        except InvalidOperation as exc:
            raise KommoPayloadError(f"numeric field value is not a number: {value!r}") from exc
    if field_type == CustomFieldType.CHECKBOX:
        return to_bool(value)
    if isinstance(value, dict):
        return value
    if isinstance(value, str | int) and not isinstance(value, bool):
        return value
    return str(value)


@dataclass(frozen=True)
class CustomFieldValueItem:
    """One value of a field: ``value`` is typed by the field's type (datetime for dates, Decimal for
    numbers, bool for checkboxes, the object for legal_entity/linked_entity/file, else the string)."""

    value: FieldScalar
    enum_id: int | None = None
    enum_code: str | None = None


@dataclass(frozen=True)
class CustomFieldValue:
    """One entry of ``custom_fields_values`` as Kommo returns it on read."""

    field_id: int
    field_name: str
    field_code: str | None
    field_type: str
    values: tuple[CustomFieldValueItem, ...]
    is_computed: bool = False

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Self:
        data = _mapping(data, "custom field value")
        field_type = _str(data, "field_type")
        raw_values = data.get("values") or []
        if isinstance(raw_values, Mapping):  # a single value as an object, seen in older payloads
            raw_values = [raw_values]
        items = []
        for raw in raw_values:
            if isinstance(raw, Mapping):
                items.append(
                    CustomFieldValueItem(
                        value=_typed_value(field_type, raw.get("value")),
                        enum_id=_opt_int(raw, "enum_id"),
                        # The older examples say "enum" where current ones say "enum_code".
                        enum_code=_opt_str(raw, "enum_code") or _opt_str(raw, "enum"),
                    )
                )
            else:
                items.append(CustomFieldValueItem(value=_typed_value(field_type, raw)))
        return cls(
            field_id=_int(data, "field_id"),
            field_name=_str(data, "field_name"),
            field_code=_opt_str(data, "field_code"),
            field_type=field_type,
            values=tuple(items),
            is_computed=_bool(data, "is_computed"),
        )

    @property
    def value(self) -> FieldScalar:
        """The first value (the only one for single-valued types), or None."""
        return self.values[0].value if self.values else None

    @property
    def enum_ids(self) -> tuple[int, ...]:
        return tuple(item.enum_id for item in self.values if item.enum_id is not None)

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(str(item.value) for item in self.values if item.value not in (None, ""))


def _field_values(data: Mapping[str, Any]) -> tuple[CustomFieldValue, ...]:
    raw = data.get("custom_fields_values") or []
    if not isinstance(raw, list):
        raise KommoPayloadError("custom_fields_values: expected a list")
    return tuple(CustomFieldValue.from_api(item) for item in raw)


def _multitext(values: tuple[CustomFieldValue, ...], code: str) -> tuple[str, ...]:
    found: list[str] = []
    for value in values:
        if (value.field_code or "").upper() == code:
            found.extend(value.texts)
    return tuple(found)


class _HasFields:
    custom_fields_values: tuple[CustomFieldValue, ...]

    def field(self, field_id: int) -> CustomFieldValue | None:
        """The value of one custom field, or None when it is empty."""
        return next((value for value in self.custom_fields_values if value.field_id == field_id), None)


# -- small embedded objects ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tag:
    id: int
    name: str
    color: str | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Self:
        return cls(id=_int(data, "id"), name=_str(data, "name"), color=_opt_str(data, "color"))


@dataclass(frozen=True)
class LeadContactRef:
    """A contact linked to a lead (``_embedded.contacts`` with ``with=contacts``)."""

    id: int
    is_main: bool


@dataclass(frozen=True)
class CatalogElementRef:
    """A catalog element linked to an entity (``_embedded.catalog_elements``, ``with=catalog_elements``)."""

    id: int
    catalog_id: int | None
    quantity: Decimal | None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Self:
        metadata = _object(data, "metadata")
        return cls(
            id=_int(data, "id"),
            catalog_id=_opt_int(metadata, "catalog_id"),
            quantity=_opt_decimal(metadata, "quantity"),
        )


def _tags(data: Mapping[str, Any]) -> tuple[Tag, ...]:
    return tuple(Tag.from_api(item) for item in _embedded_list(data, "tags"))


def _catalog_elements(data: Mapping[str, Any]) -> tuple[CatalogElementRef, ...]:
    return tuple(CatalogElementRef.from_api(item) for item in _embedded_list(data, "catalog_elements"))


# -- entities (read) -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lead(_HasFields):
    """A lead (the business's "deal")."""

    id: int
    name: str
    price: int
    status_id: int
    pipeline_id: int
    responsible_user_id: int | None
    group_id: int | None
    loss_reason_id: int | None
    source_id: int | None
    created_by: int | None
    updated_by: int | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    closed_at: dt.datetime | None
    closest_task_at: dt.datetime | None
    is_deleted: bool
    score: int | None
    account_id: int | None
    labor_cost: int | None
    custom_fields_values: tuple[CustomFieldValue, ...]
    tags: tuple[Tag, ...]
    contacts: tuple[LeadContactRef, ...]
    company_ids: tuple[int, ...]
    catalog_elements: tuple[CatalogElementRef, ...]
    raw: JSON = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Self:
        data = _mapping(data, "lead")
        return cls(
            id=_int(data, "id"),
            name=_str(data, "name"),
            price=_opt_int(data, "price") or 0,
            status_id=_int(data, "status_id"),
            pipeline_id=_int(data, "pipeline_id"),
            responsible_user_id=_opt_int(data, "responsible_user_id"),
            group_id=_opt_int(data, "group_id"),
            loss_reason_id=_opt_int(data, "loss_reason_id"),
            source_id=_opt_int(data, "source_id"),
            created_by=_opt_int(data, "created_by"),
            updated_by=_opt_int(data, "updated_by"),
            created_at=_ts(data, "created_at"),
            updated_at=_ts(data, "updated_at"),
            closed_at=_ts(data, "closed_at"),
            closest_task_at=_ts(data, "closest_task_at"),
            is_deleted=_bool(data, "is_deleted"),
            score=_opt_int(data, "score"),
            account_id=_opt_int(data, "account_id"),
            labor_cost=_opt_int(data, "labor_cost"),
            custom_fields_values=_field_values(data),
            tags=_tags(data),
            contacts=tuple(
                LeadContactRef(id=_int(item, "id"), is_main=_bool(item, "is_main"))
                for item in _embedded_list(data, "contacts")
            ),
            company_ids=_ids(_embedded_list(data, "companies")),
            catalog_elements=_catalog_elements(data),
            raw=dict(data),
        )

    @property
    def main_contact_id(self) -> int | None:
        return next((contact.id for contact in self.contacts if contact.is_main), None)

    @property
    def is_won(self) -> bool:
        return self.status_id == WON_STATUS_ID

    @property
    def is_lost(self) -> bool:
        return self.status_id == LOST_STATUS_ID


@dataclass(frozen=True)
class Contact(_HasFields):
    """A person. Phones and e-mails live in the predefined PHONE / EMAIL multitext fields."""

    id: int
    name: str
    first_name: str
    last_name: str
    responsible_user_id: int | None
    group_id: int | None
    created_by: int | None
    updated_by: int | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    closest_task_at: dt.datetime | None
    is_deleted: bool
    is_unsorted: bool
    account_id: int | None
    custom_fields_values: tuple[CustomFieldValue, ...]
    tags: tuple[Tag, ...]
    company_ids: tuple[int, ...]
    lead_ids: tuple[int, ...]
    catalog_elements: tuple[CatalogElementRef, ...]
    raw: JSON = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Self:
        data = _mapping(data, "contact")
        return cls(
            id=_int(data, "id"),
            name=_str(data, "name"),
            first_name=_str(data, "first_name"),
            last_name=_str(data, "last_name"),
            responsible_user_id=_opt_int(data, "responsible_user_id"),
            group_id=_opt_int(data, "group_id"),
            created_by=_opt_int(data, "created_by"),
            updated_by=_opt_int(data, "updated_by"),
            created_at=_ts(data, "created_at"),
            updated_at=_ts(data, "updated_at"),
            closest_task_at=_ts(data, "closest_task_at"),
            is_deleted=_bool(data, "is_deleted"),
            is_unsorted=_bool(data, "is_unsorted"),
            account_id=_opt_int(data, "account_id"),
            custom_fields_values=_field_values(data),
            tags=_tags(data),
            company_ids=_ids(_embedded_list(data, "companies")),
            lead_ids=_ids(_embedded_list(data, "leads")),
            catalog_elements=_catalog_elements(data),
            raw=dict(data),
        )

    @property
    def emails(self) -> tuple[str, ...]:
        return _multitext(self.custom_fields_values, "EMAIL")

    @property
    def phones(self) -> tuple[str, ...]:
        return _multitext(self.custom_fields_values, "PHONE")


@dataclass(frozen=True)
class Company(_HasFields):
    id: int
    name: str
    responsible_user_id: int | None
    group_id: int | None
    created_by: int | None
    updated_by: int | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    closest_task_at: dt.datetime | None
    is_deleted: bool
    account_id: int | None
    custom_fields_values: tuple[CustomFieldValue, ...]
    tags: tuple[Tag, ...]
    contact_ids: tuple[int, ...]
    lead_ids: tuple[int, ...]
    catalog_elements: tuple[CatalogElementRef, ...]
    raw: JSON = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Self:
        data = _mapping(data, "company")
        return cls(
            id=_int(data, "id"),
            name=_str(data, "name"),
            responsible_user_id=_opt_int(data, "responsible_user_id"),
            group_id=_opt_int(data, "group_id"),
            created_by=_opt_int(data, "created_by"),
            updated_by=_opt_int(data, "updated_by"),
            created_at=_ts(data, "created_at"),
            updated_at=_ts(data, "updated_at"),
            closest_task_at=_ts(data, "closest_task_at"),
            is_deleted=_bool(data, "is_deleted"),
            account_id=_opt_int(data, "account_id"),
            custom_fields_values=_field_values(data),
            tags=_tags(data),
            contact_ids=_ids(_embedded_list(data, "contacts")),
            lead_ids=_ids(_embedded_list(data, "leads")),
            catalog_elements=_catalog_elements(data),
            raw=dict(data),
        )

    @property
    def emails(self) -> tuple[str, ...]:
        return _multitext(self.custom_fields_values, "EMAIL")

    @property
    def phones(self) -> tuple[str, ...]:
        return _multitext(self.custom_fields_values, "PHONE")


class StatusType:
    """``type`` of a status: 0 regular (also 142/143), 1 incoming leads ("unsorted")."""

    REGULAR = 0
    INCOMING = 1


@dataclass(frozen=True)
class Status:
    """A stage of a pipeline. 142 (won) and 143 (lost) have the same id in every pipeline."""

    id: int
    name: str
    sort: int
    pipeline_id: int
    type: int
    is_editable: bool
    color: str | None
    account_id: int | None
    raw: JSON = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any], *, pipeline_id: int | None = None) -> Self:
        data = _mapping(data, "status")
        owner = _opt_int(data, "pipeline_id") or pipeline_id
        if owner is None:
            raise KommoPayloadError("status without pipeline_id")
        return cls(
            id=_int(data, "id"),
            name=_str(data, "name"),
            sort=_opt_int(data, "sort") or 0,
            pipeline_id=owner,
            type=_opt_int(data, "type") or StatusType.REGULAR,
            is_editable=_bool(data, "is_editable", default=True),
            color=_opt_str(data, "color"),
            account_id=_opt_int(data, "account_id"),
            raw=dict(data),
        )

    @property
    def is_won(self) -> bool:
        return self.id == WON_STATUS_ID

    @property
    def is_lost(self) -> bool:
        return self.id == LOST_STATUS_ID

    @property
    def is_closed(self) -> bool:
        return self.id in (WON_STATUS_ID, LOST_STATUS_ID)

    @property
    def is_incoming(self) -> bool:
        return self.type == StatusType.INCOMING


@dataclass(frozen=True)
class Pipeline:
    id: int
    name: str
    sort: int
    is_main: bool
    is_unsorted_on: bool
    is_archive: bool
    account_id: int | None
    statuses: tuple[Status, ...]
    raw: JSON = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Self:
        data = _mapping(data, "pipeline")
        pipeline_id = _int(data, "id")
        return cls(
            id=pipeline_id,
            name=_str(data, "name"),
            sort=_opt_int(data, "sort") or 0,
            is_main=_bool(data, "is_main"),
            is_unsorted_on=_bool(data, "is_unsorted_on"),
            is_archive=_bool(data, "is_archive"),
            account_id=_opt_int(data, "account_id"),
            statuses=tuple(
                Status.from_api(item, pipeline_id=pipeline_id) for item in _embedded_list(data, "statuses")
            ),
            raw=dict(data),
        )

    def status(self, status_id: int) -> Status | None:
        return next((status for status in self.statuses if status.id == status_id), None)


@dataclass(frozen=True)
class KommoUser:
    id: int
    name: str
    email: str
    lang: str | None
    is_admin: bool
    is_active: bool
    is_free: bool
    group_id: int | None
    role_id: int | None
    raw: JSON = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Self:
        data = _mapping(data, "user")
        rights = _object(data, "rights")
        return cls(
            id=_int(data, "id"),
            name=_str(data, "name"),
            email=_str(data, "email"),
            lang=_opt_str(data, "lang"),
            is_admin=_bool(rights, "is_admin"),
            is_active=_bool(rights, "is_active", default=True),
            is_free=_bool(rights, "is_free"),
            group_id=_opt_int(rights, "group_id"),
            role_id=_opt_int(rights, "role_id"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class CustomFieldEnum:
    id: int
    value: str
    sort: int
    code: str | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            id=_int(data, "id"),
            value=_str(data, "value"),
            sort=_opt_int(data, "sort") or 0,
            code=_opt_str(data, "code"),
        )


@dataclass(frozen=True)
class StageRef:
    """A (pipeline, status) pair, as in ``required_statuses`` / ``hidden_statuses``."""

    pipeline_id: int
    status_id: int


def _stage_refs(data: Mapping[str, Any], key: str) -> tuple[StageRef, ...]:
    raw = data.get(key) or []
    return tuple(
        StageRef(pipeline_id=_int(item, "pipeline_id"), status_id=_int(item, "status_id"))
        for item in raw
        if isinstance(item, Mapping)
    )


@dataclass(frozen=True)
class CustomField:
    """A custom field definition. ``type`` is a string so that a type Kommo adds later still parses;
    compare it with :class:`CustomFieldType` members."""

    id: int
    name: str
    type: str
    code: str | None
    sort: int
    entity_type: str | None
    group_id: str | None
    is_predefined: bool
    is_deletable: bool
    is_api_only: bool
    is_required: bool
    enums: tuple[CustomFieldEnum, ...]
    required_statuses: tuple[StageRef, ...]
    hidden_statuses: tuple[StageRef, ...]
    catalog_id: int | None
    currency: str | None
    raw: JSON = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Self:
        data = _mapping(data, "custom field")
        enums = data.get("enums") or []
        return cls(
            id=_int(data, "id"),
            name=_str(data, "name"),
            type=_str(data, "type"),
            code=_opt_str(data, "code"),
            sort=_opt_int(data, "sort") or 0,
            entity_type=_opt_str(data, "entity_type"),
            group_id=_opt_str(data, "group_id"),
            is_predefined=_bool(data, "is_predefined"),
            is_deletable=_bool(data, "is_deletable", default=True),
            is_api_only=_bool(data, "is_api_only"),
            is_required=_bool(data, "is_required"),
            enums=tuple(CustomFieldEnum.from_api(item) for item in enums if isinstance(item, Mapping)),
            required_statuses=_stage_refs(data, "required_statuses"),
            hidden_statuses=_stage_refs(data, "hidden_statuses"),
            catalog_id=_opt_int(data, "catalog_id"),
            currency=_opt_str(data, "currency"),
            raw=dict(data),
        )

    def enum(self, enum_id: int) -> CustomFieldEnum | None:
        return next((option for option in self.enums if option.id == enum_id), None)


@dataclass(frozen=True)
class Catalog:
    """A list ("catalog"): ``type`` is "regular" or "products"."""

    id: int
    name: str
    type: str
    sort: int
    can_add_elements: bool
    can_link_multiple: bool
    can_show_in_cards: bool
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    account_id: int | None
    raw: JSON = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Self:
        data = _mapping(data, "catalog")
        return cls(
            id=_int(data, "id"),
            name=_str(data, "name"),
            type=_str(data, "type", "regular"),
            sort=_opt_int(data, "sort") or 0,
            can_add_elements=_bool(data, "can_add_elements", default=True),
            can_link_multiple=_bool(data, "can_link_multiple", default=True),
            can_show_in_cards=_bool(data, "can_show_in_cards"),
            created_at=_ts(data, "created_at"),
            updated_at=_ts(data, "updated_at"),
            account_id=_opt_int(data, "account_id"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class CatalogElement(_HasFields):
    id: int
    name: str
    catalog_id: int
    created_by: int | None
    updated_by: int | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    is_deleted: bool
    account_id: int | None
    custom_fields_values: tuple[CustomFieldValue, ...]
    request_id: str | None
    raw: JSON = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any], *, catalog_id: int | None = None) -> Self:
        data = _mapping(data, "catalog element")
        owner = _opt_int(data, "catalog_id") or catalog_id
        if owner is None:
            raise KommoPayloadError("catalog element without catalog_id")
        return cls(
            id=_int(data, "id"),
            name=_str(data, "name"),
            catalog_id=owner,
            created_by=_opt_int(data, "created_by"),
            updated_by=_opt_int(data, "updated_by"),
            created_at=_ts(data, "created_at"),
            updated_at=_ts(data, "updated_at"),
            is_deleted=_bool(data, "is_deleted"),
            account_id=_opt_int(data, "account_id"),
            custom_fields_values=_field_values(data),
            request_id=_opt_str(data, "request_id"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Link:
    """A link between two entities. ``is_main`` reads the response's ``main_contact`` (the request says
    ``is_main``); ``quantity``/``catalog_id`` are set for catalog elements."""

    entity_id: int | None
    entity_type: str | None
    to_entity_id: int
    to_entity_type: str
    is_main: bool | None
    quantity: Decimal | None
    catalog_id: int | None
    metadata: JSON = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Self:
        data = _mapping(data, "link")
        metadata = _object(data, "metadata")
        main = metadata.get("main_contact", metadata.get("is_main"))
        return cls(
            entity_id=_opt_int(data, "entity_id"),
            entity_type=_opt_str(data, "entity_type"),
            to_entity_id=_int(data, "to_entity_id"),
            to_entity_type=_str(data, "to_entity_type"),
            is_main=None if main is None else to_bool(main),
            quantity=_opt_decimal(metadata, "quantity"),
            catalog_id=_opt_int(metadata, "catalog_id"),
            metadata=dict(metadata),
        )


@dataclass(frozen=True)
class Task:
    id: int
    text: str
    entity_id: int | None
    entity_type: str | None
    responsible_user_id: int | None
    task_type_id: int | None
    complete_till: dt.datetime | None
    is_completed: bool
    result_text: str | None
    duration: int | None
    created_by: int | None
    updated_by: int | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    account_id: int | None
    raw: JSON = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Self:
        data = _mapping(data, "task")
        result = data.get("result")  # [] when empty, {"text": ...} when set
        return cls(
            id=_int(data, "id"),
            text=_str(data, "text"),
            entity_id=_opt_int(data, "entity_id"),
            entity_type=_opt_str(data, "entity_type"),
            responsible_user_id=_opt_int(data, "responsible_user_id"),
            task_type_id=_opt_int(data, "task_type_id"),
            complete_till=_ts(data, "complete_till"),
            is_completed=_bool(data, "is_completed"),
            result_text=_opt_str(result, "text") if isinstance(result, Mapping) else None,
            duration=_opt_int(data, "duration"),
            created_by=_opt_int(data, "created_by"),
            updated_by=_opt_int(data, "updated_by"),
            created_at=_ts(data, "created_at"),
            updated_at=_ts(data, "updated_at"),
            account_id=_opt_int(data, "account_id"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Note:
    id: int
    entity_id: int | None
    note_type: str
    text: str | None
    created_by: int | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    request_id: str | None
    raw: JSON = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Self:
        data = _mapping(data, "note")
        params = _object(data, "params")
        return cls(
            id=_int(data, "id"),
            entity_id=_opt_int(data, "entity_id"),
            note_type=_str(data, "note_type"),
            text=_opt_str(params, "text"),
            created_by=_opt_int(data, "created_by"),
            created_at=_ts(data, "created_at"),
            updated_at=_ts(data, "updated_at"),
            request_id=_opt_str(data, "request_id"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Event:
    """An entry of the events log. Its id is a string; ``value_before``/``value_after`` are lists of small
    objects whose shape depends on ``type`` (e.g. ``{"lead_status": {"id", "pipeline_id"}}``)."""

    id: str
    type: str
    entity_id: int | None
    entity_type: str
    created_by: int | None
    created_at: dt.datetime | None
    value_before: tuple[JSON, ...]
    value_after: tuple[JSON, ...]
    account_id: int | None
    raw: JSON = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Self:
        data = _mapping(data, "event")

        def values(key: str) -> tuple[JSON, ...]:
            raw = data.get(key) or []
            return tuple(dict(item) for item in raw if isinstance(item, Mapping))

        return cls(
            id=str(_required(data, "id")),
            type=_str(data, "type"),
            entity_id=_opt_int(data, "entity_id"),
            entity_type=_str(data, "entity_type"),
            created_by=_opt_int(data, "created_by"),
            created_at=_ts(data, "created_at"),
            value_before=values("value_before"),
            value_after=values("value_after"),
            account_id=_opt_int(data, "account_id"),
            raw=dict(data),
        )

    def _lead_status(self, values: tuple[JSON, ...]) -> StageRef | None:
        for value in values:
            status = value.get("lead_status")
            if isinstance(status, Mapping):
                return StageRef(pipeline_id=_int(status, "pipeline_id"), status_id=_int(status, "id"))
        return None

    @property
    def lead_status_before(self) -> StageRef | None:
        return self._lead_status(self.value_before)

    @property
    def lead_status_after(self) -> StageRef | None:
        return self._lead_status(self.value_after)

    def field_change(self) -> FieldChange | None:
        """A ``custom_field_value_changed`` (or ``custom_field_{ID}_value_changed``) event as the change of
        one field's values; None for another type, or one naming no field or no moment."""
        if not (self.type == "custom_field_value_changed" or _FIELD_EVENT.fullmatch(self.type)):
            return None
        before = _event_field_values(self.value_before)
        after = _event_field_values(self.value_after)
        field_ids = {value.field_id for value in (*before, *after)}
        if len(field_ids) != 1 or self.entity_id is None or self.created_at is None:
            return None
        return FieldChange(
            event_id=self.id,
            entity_type=self.entity_type,
            entity_id=self.entity_id,
            field_id=field_ids.pop(),
            before=before,
            after=after,
            at=self.created_at,
            created_by=self.created_by or None,
        )


_FIELD_EVENT = re.compile(r"custom_field_\d+_value_changed")


def _event_field_values(values: tuple[JSON, ...]) -> tuple[FieldValueSeen, ...]:
    found = []
    for value in values:
        item = value.get("custom_field_value")
        if not isinstance(item, Mapping) or not isinstance(item.get("field_id"), int):
            continue
        enum_id = item.get("enum_id")
        text = item.get("text")
        found.append(
            FieldValueSeen(
                field_id=item["field_id"],
                enum_id=enum_id if isinstance(enum_id, int) and not isinstance(enum_id, bool) else None,
                text="" if text is None else str(text),
            )
        )
    return tuple(found)


@dataclass(frozen=True)
class FieldValueSeen:
    """One value of a field in an event: its option (selects) and its text (a date's is unix seconds)."""

    field_id: int
    enum_id: int | None
    text: str


@dataclass(frozen=True)
class FieldChange:
    """The values of one custom field of one entity (``contact``, ``lead``, ``company`` or
    ``catalog_{id}``) before and after a change, when Kommo logged it."""

    event_id: str
    entity_type: str
    entity_id: int
    field_id: int
    before: tuple[FieldValueSeen, ...]
    after: tuple[FieldValueSeen, ...]
    at: dt.datetime
    created_by: int | None

    @property
    def catalog_id(self) -> int | None:
        """The catalog of a catalog element's change (``catalog_{id}``), else None."""
        prefix, _, number = self.entity_type.partition("_")
        return int(number) if prefix == "catalog" and number.isdigit() else None


@dataclass(frozen=True)
class WebhookSubscription:
    id: int
    destination: str
    settings: tuple[str, ...]
    sort: int
    disabled: bool
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    created_by: int | None
    account_id: int | None
    raw: JSON = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Self:
        data = _mapping(data, "webhook")
        settings = data.get("settings") or []
        return cls(
            id=_int(data, "id"),
            destination=_str(data, "destination"),
            settings=tuple(str(item) for item in settings),
            sort=_opt_int(data, "sort") or 0,
            disabled=_bool(data, "disabled"),
            created_at=_ts(data, "created_at"),
            updated_at=_ts(data, "updated_at"),
            created_by=_opt_int(data, "created_by"),
            account_id=_opt_int(data, "account_id"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Account:
    """``GET /api/v4/account``: who the token belongs to."""

    id: int
    name: str
    subdomain: str
    current_user_id: int | None
    country: str | None
    currency: str | None
    created_at: dt.datetime | None
    raw: JSON = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Self:
        data = _mapping(data, "account")
        return cls(
            id=_int(data, "id"),
            name=_str(data, "name"),
            subdomain=_str(data, "subdomain"),
            current_user_id=_opt_int(data, "current_user_id"),
            country=_opt_str(data, "country"),
            currency=_opt_str(data, "currency"),
            created_at=_ts(data, "created_at"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class ComplexLeadResult:
    """One item of the bare array ``POST /leads/complex`` answers. ``request_ids`` lists every request item
    that ended up in this lead; ``merged`` means duplicate control matched an existing lead."""

    id: int
    contact_id: int | None
    company_id: int | None
    request_ids: tuple[str, ...]
    merged: bool

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Self:
        data = _mapping(data, "complex lead result")
        request_ids = data.get("request_id") or []
        if not isinstance(request_ids, list):
            request_ids = [request_ids]
        return cls(
            id=_int(data, "id"),
            contact_id=_opt_int(data, "contact_id"),
            company_id=_opt_int(data, "company_id"),
            request_ids=tuple(str(item) for item in request_ids),
            merged=_bool(data, "merged"),
        )


@dataclass(frozen=True)
class WriteResult:
    """One item of a POST/PATCH answer (``_embedded.<entity>[]``): the id, and ``request_id`` when Kommo
    echoed it (creates echo the client's value or the array position)."""

    id: int
    request_id: str | None
    updated_at: dt.datetime | None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Self:
        data = _mapping(data, "write result")
        return cls(
            id=_int(data, "id"), request_id=_opt_str(data, "request_id"), updated_at=_ts(data, "updated_at")
        )


@dataclass(frozen=True)
class TokenPair:
    """``POST /oauth2/access_token`` answer. The tokens never appear in ``repr``."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: dt.datetime
    token_type: str = "Bearer"  # noqa: S105 - the scheme name, not a secret

    @classmethod
    def from_api(cls, data: Mapping[str, Any], *, now: dt.datetime | None = None) -> Self:
        data = _mapping(data, "token response")
        issued = _ts(data, "server_time") or now or dt.datetime.now(tz=dt.UTC)
        return cls(
            access_token=str(_required(data, "access_token")),
            refresh_token=str(_required(data, "refresh_token")),
            expires_at=issued + dt.timedelta(seconds=_int(data, "expires_in")),
            token_type=_str(data, "token_type", "Bearer"),
        )


# -- writes ---------------------------------------------------------------------------------------------


def _compact(data: Mapping[str, Any]) -> JSON:
    return {key: value for key, value in data.items() if value is not None}


def _write_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return to_timestamp(value)
    if isinstance(value, Decimal):
        return str(value)
    return value


@dataclass(frozen=True)
class FieldValueWrite:
    """One ``custom_fields_values`` item for a write. Identify the field by ``field_id`` or ``field_code``;
    ``values=None`` clears the field. Use the constructors for each field type."""

    values: tuple[JSON, ...] | None
    field_id: int | None = None
    field_code: str | None = None

    def __post_init__(self) -> None:
        if (self.field_id is None) == (self.field_code is None):
            raise ValueError("give exactly one of field_id and field_code")

    @classmethod
    def of(cls, field_id: int, value: str | int | bool | Decimal | dt.datetime) -> Self:
        """text, textarea, url, numeric, monetary, checkbox, date, date_time, birthday: one plain value."""
        return cls(field_id=field_id, values=({"value": _write_value(value)},))

    @classmethod
    def enums(cls, field_id: int, *enum_ids: int) -> Self:
        """select, radiobutton, category (one id) and multiselect (several)."""
        return cls(field_id=field_id, values=tuple({"enum_id": enum_id} for enum_id in enum_ids))

    @classmethod
    def multitext(cls, field_code: str, values: Iterable[str], enum_code: str = "WORK") -> Self:
        """PHONE / EMAIL of contacts and companies."""
        return cls(field_code=field_code, values=tuple({"value": v, "enum_code": enum_code} for v in values))

    @classmethod
    def clear(cls, field_id: int) -> Self:
        return cls(field_id=field_id, values=None)

    def to_api(self) -> JSON:
        data: JSON = (
            {"field_id": self.field_id} if self.field_id is not None else {"field_code": self.field_code}
        )
        data["values"] = None if self.values is None else [dict(value) for value in self.values]
        return data


def _fields_to_api(values: tuple[FieldValueWrite, ...] | None) -> list[JSON] | None:
    return None if values is None else [value.to_api() for value in values]


def _tags_to_api(tags: tuple[str | int, ...] | None) -> list[JSON] | None:
    if tags is None:
        return None
    return [{"id": tag} if isinstance(tag, int) else {"name": tag} for tag in tags]


@dataclass(frozen=True)
class LeadWrite:
    """A lead to create (``id`` None) or to update (``id`` set). Unset fields are left out.
    ``tags`` are names or ids; ``contacts`` are (contact id, is_main) pairs."""

    id: int | None = None
    name: str | None = None
    price: int | None = None
    status_id: int | None = None
    pipeline_id: int | None = None
    responsible_user_id: int | None = None
    loss_reason_id: int | None = None
    custom_fields_values: tuple[FieldValueWrite, ...] | None = None
    tags: tuple[str | int, ...] | None = None
    contacts: tuple[tuple[int, bool], ...] | None = None
    company_id: int | None = None
    request_id: str | None = None

    def to_api(self) -> JSON:
        embedded = _compact(
            {
                "tags": _tags_to_api(self.tags),
                "contacts": None
                if self.contacts is None
                else [{"id": contact_id, "is_main": is_main} for contact_id, is_main in self.contacts],
                "companies": None if self.company_id is None else [{"id": self.company_id}],
            }
        )
        data = _compact(
            {
                "id": self.id,
                "name": self.name,
                "price": self.price,
                "status_id": self.status_id,
                "pipeline_id": self.pipeline_id,
                "responsible_user_id": self.responsible_user_id,
                "loss_reason_id": self.loss_reason_id,
                "custom_fields_values": _fields_to_api(self.custom_fields_values),
                "request_id": self.request_id,
            }
        )
        if embedded:
            data["_embedded"] = embedded
        return data


@dataclass(frozen=True)
class ContactWrite:
    """A contact to create or update. ``emails``/``phones`` become the EMAIL/PHONE multitext fields."""

    id: int | None = None
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    responsible_user_id: int | None = None
    emails: tuple[str, ...] | None = None
    phones: tuple[str, ...] | None = None
    custom_fields_values: tuple[FieldValueWrite, ...] | None = None
    tags: tuple[str | int, ...] | None = None
    request_id: str | None = None

    def to_api(self) -> JSON:
        return _party_to_api(self, {"first_name": self.first_name, "last_name": self.last_name})


@dataclass(frozen=True)
class CompanyWrite:
    id: int | None = None
    name: str | None = None
    responsible_user_id: int | None = None
    emails: tuple[str, ...] | None = None
    phones: tuple[str, ...] | None = None
    custom_fields_values: tuple[FieldValueWrite, ...] | None = None
    tags: tuple[str | int, ...] | None = None
    request_id: str | None = None

    def to_api(self) -> JSON:
        return _party_to_api(self, {})


def _party_to_api(party: ContactWrite | CompanyWrite, names: JSON) -> JSON:
    """A contact's or company's write shape: e-mails and phones go into the EMAIL/PHONE fields."""
    fields = list(party.custom_fields_values or ())
    if party.emails is not None:
        fields.append(FieldValueWrite.multitext("EMAIL", party.emails))
    if party.phones is not None:
        fields.append(FieldValueWrite.multitext("PHONE", party.phones))
    data = _compact(
        {
            "id": party.id,
            "name": party.name,
            **names,
            "responsible_user_id": party.responsible_user_id,
            "custom_fields_values": [value.to_api() for value in fields] if fields else None,
            "request_id": party.request_id,
        }
    )
    tags = _tags_to_api(party.tags)
    if tags is not None:
        data["_embedded"] = {"tags": tags}
    return data


@dataclass(frozen=True)
class ComplexLeadWrite:
    """One item of ``POST /leads/complex``: a lead with at most one new contact and one new company."""

    lead: LeadWrite
    contact: ContactWrite | None = None
    company: CompanyWrite | None = None

    def to_api(self) -> JSON:
        data = self.lead.to_api()
        embedded: JSON = dict(data.get("_embedded", {}))
        if self.contact is not None:
            embedded["contacts"] = [self.contact.to_api()]
        if self.company is not None:
            embedded["companies"] = [self.company.to_api()]
        if embedded:
            data["_embedded"] = embedded
        return data


@dataclass(frozen=True)
class CustomFieldWrite:
    """A custom field definition to create: ``enums`` are option labels, in order."""

    name: str
    type: str
    code: str | None = None
    sort: int | None = None
    enums: tuple[str, ...] | None = None
    request_id: str | None = None

    def to_api(self) -> JSON:
        return _compact(
            {
                "name": self.name,
                "type": str(self.type),
                "code": self.code,
                "sort": self.sort,
                "enums": None
                if self.enums is None
                else [{"value": value, "sort": (index + 1) * 10} for index, value in enumerate(self.enums)],
                "request_id": self.request_id,
            }
        )


@dataclass(frozen=True)
class CatalogWrite:
    name: str
    type: str = "regular"
    can_add_elements: bool | None = None
    can_link_multiple: bool | None = None
    sort: int | None = None
    request_id: str | None = None

    def to_api(self) -> JSON:
        return _compact(
            {
                "name": self.name,
                "type": self.type,
                "can_add_elements": self.can_add_elements,
                "can_link_multiple": self.can_link_multiple,
                "sort": self.sort,
                "request_id": self.request_id,
            }
        )


@dataclass(frozen=True)
class CatalogElementWrite:
    id: int | None = None
    name: str | None = None
    custom_fields_values: tuple[FieldValueWrite, ...] | None = None
    request_id: str | None = None

    def to_api(self) -> JSON:
        return _compact(
            {
                "id": self.id,
                "name": self.name,
                "custom_fields_values": _fields_to_api(self.custom_fields_values),
                "request_id": self.request_id,
            }
        )


@dataclass(frozen=True)
class LinkWrite:
    """A link from an entity to a contact, company or catalog element (``catalog_id`` is required for
    catalog elements; ``is_main`` applies to contacts)."""

    to_entity_id: int
    to_entity_type: str
    is_main: bool | None = None
    quantity: int | Decimal | None = None
    catalog_id: int | None = None
    updated_by: int | None = None

    def __post_init__(self) -> None:
        if self.to_entity_type == "catalog_elements" and self.catalog_id is None:
            raise ValueError("a link to a catalog element needs catalog_id")

    def to_api(self) -> JSON:
        metadata = _compact(
            {
                "is_main": self.is_main,
                "quantity": None if self.quantity is None else _write_value(self.quantity),
                "catalog_id": self.catalog_id,
                "updated_by": self.updated_by,
            }
        )
        data: JSON = {"to_entity_id": self.to_entity_id, "to_entity_type": self.to_entity_type}
        if metadata:
            data["metadata"] = metadata
        return data


@dataclass(frozen=True)
class TaskWrite:
    """A task to create (``id`` None; ``text`` and ``complete_till`` required) or update."""

    id: int | None = None
    text: str | None = None
    complete_till: dt.datetime | None = None
    entity_id: int | None = None
    entity_type: str | None = None
    task_type_id: int | None = None
    responsible_user_id: int | None = None
    is_completed: bool | None = None
    result_text: str | None = None
    request_id: str | None = None

    def __post_init__(self) -> None:
        if self.id is None and (not self.text or self.complete_till is None):
            raise ValueError("a new task needs text and complete_till")

    def to_api(self) -> JSON:
        return _compact(
            {
                "id": self.id,
                "text": self.text,
                "complete_till": None if self.complete_till is None else to_timestamp(self.complete_till),
                "entity_id": self.entity_id,
                "entity_type": self.entity_type,
                "task_type_id": self.task_type_id,
                "responsible_user_id": self.responsible_user_id,
                "is_completed": self.is_completed,
                "result": None if self.result_text is None else {"text": self.result_text},
                "request_id": self.request_id,
            }
        )


@dataclass(frozen=True)
class NoteWrite:
    """A note on an entity; ``common`` notes carry ``params.text``."""

    entity_id: int
    text: str
    note_type: str = "common"
    request_id: str | None = None

    def to_api(self) -> JSON:
        return _compact(
            {
                "entity_id": self.entity_id,
                "note_type": self.note_type,
                "params": {"text": self.text},
                "request_id": self.request_id,
            }
        )
