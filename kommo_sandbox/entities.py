"""The sandbox's records: plain dataclasses held in memory by :mod:`kommo_sandbox.store`.

Field names follow Kommo's API v4 so that serializing a record is mostly a copy. Custom field values are
kept in their read shape without the field's name, code and type (those come from the definition when
the record is serialized, so renaming a field shows everywhere).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WON_STATUS_ID = 142
LOST_STATUS_ID = 143
CLOSED_STATUS_IDS = (WON_STATUS_ID, LOST_STATUS_ID)

CfValues = list[dict[str, Any]]  # [{"field_id": 1, "values": [{"value": "x", ...}]}]


@dataclass
class User:
    id: int
    name: str
    email: str
    is_admin: bool = False
    is_active: bool = True
    lang: str = "en"
    group_id: int | None = None
    role_id: int | None = None
    phone_number: str = ""


@dataclass
class Role:
    id: int
    name: str


@dataclass
class Group:
    id: int
    name: str


@dataclass
class Status:
    id: int
    name: str
    sort: int
    pipeline_id: int
    color: str
    type: int = 0
    is_editable: bool = True


@dataclass
class Pipeline:
    id: int
    name: str
    sort: int
    is_main: bool = False
    is_unsorted_on: bool = True
    is_archive: bool = False
    statuses: list[Status] = field(default_factory=list)

    def status(self, status_id: int) -> Status | None:
        return next((s for s in self.statuses if s.id == status_id), None)

    def ordered_statuses(self) -> list[Status]:
        return sorted(self.statuses, key=lambda s: (s.sort, s.id))

    def first_working_status(self) -> Status:
        """The stage a new lead lands in: the first one after "incoming"."""
        regular = [s for s in self.ordered_statuses() if s.type == 0 and s.id not in CLOSED_STATUS_IDS]
        return regular[0] if regular else self.ordered_statuses()[0]


@dataclass
class Enum:
    id: int
    value: str
    sort: int
    code: str | None = None


@dataclass
class CustomField:
    id: int
    name: str
    type: str
    entity_type: str  # leads | contacts | companies | catalogs
    sort: int = 500
    code: str | None = None
    enums: list[Enum] | None = None
    catalog_id: int | None = None
    is_predefined: bool = False
    is_deletable: bool = True
    is_api_only: bool = False
    is_visible: bool = True
    is_required: bool = False
    group_id: str | None = None
    required_statuses: list[dict[str, int]] = field(default_factory=list)
    hidden_statuses: list[dict[str, int]] = field(default_factory=list)
    remind: str | None = None
    currency: str | None = None
    settings: dict[str, Any] | None = None
    tracking_callback: str | None = None
    search_in: str | None = None
    chained_lists: list[dict[str, Any]] | None = None

    def enum_by_id(self, enum_id: Any) -> Enum | None:
        return next((e for e in self.enums or [] if e.id == enum_id), None)

    def enum_by_code(self, code: Any) -> Enum | None:
        if not isinstance(code, str):
            return None
        return next(
            (e for e in self.enums or [] if (e.code or e.value).upper() == code.upper()),
            None,
        )

    def enum_by_value(self, value: Any) -> Enum | None:
        return next((e for e in self.enums or [] if e.value == value), None)


@dataclass
class Tag:
    id: int
    name: str
    entity_type: str
    color: str | None = None


@dataclass
class LossReason:
    id: int
    name: str
    sort: int
    created_at: int
    updated_at: int


@dataclass
class Lead:
    id: int
    name: str
    price: int
    responsible_user_id: int
    status_id: int
    pipeline_id: int
    created_by: int
    updated_by: int
    created_at: int
    updated_at: int
    group_id: int = 0
    closed_at: int | None = None
    loss_reason_id: int | None = None
    closest_task_at: int | None = None
    is_deleted: bool = False
    score: int | None = None
    labor_cost: int | None = None
    source_id: int | None = None
    custom_fields_values: CfValues = field(default_factory=list)
    tag_ids: list[int] = field(default_factory=list)


@dataclass
class Contact:
    id: int
    name: str
    first_name: str
    last_name: str
    responsible_user_id: int
    created_by: int
    updated_by: int
    created_at: int
    updated_at: int
    group_id: int = 0
    closest_task_at: int | None = None
    is_deleted: bool = False
    is_unsorted: bool = False
    custom_fields_values: CfValues = field(default_factory=list)
    tag_ids: list[int] = field(default_factory=list)


@dataclass
class Company:
    id: int
    name: str
    responsible_user_id: int
    created_by: int
    updated_by: int
    created_at: int
    updated_at: int
    group_id: int = 0
    closest_task_at: int | None = None
    is_deleted: bool = False
    custom_fields_values: CfValues = field(default_factory=list)
    tag_ids: list[int] = field(default_factory=list)


@dataclass
class Task:
    id: int
    text: str
    complete_till: int
    responsible_user_id: int
    created_by: int
    updated_by: int
    created_at: int
    updated_at: int
    entity_id: int | None = None
    entity_type: str | None = None  # leads | contacts | companies
    task_type_id: int = 1
    is_completed: bool = False
    duration: int = 0
    group_id: int = 0
    result: dict[str, Any] | None = None


@dataclass
class Note:
    id: int
    entity_type: str  # leads | contacts | companies
    entity_id: int
    note_type: str
    params: dict[str, Any]
    responsible_user_id: int
    created_by: int
    updated_by: int
    created_at: int
    updated_at: int
    group_id: int = 0


@dataclass
class Catalog:
    id: int
    name: str
    type: str  # regular | products
    sort: int
    created_by: int
    updated_by: int
    created_at: int
    updated_at: int
    can_add_elements: bool = True
    can_show_in_cards: bool = False
    can_link_multiple: bool = True
    can_be_deleted: bool = True
    sdk_widget_code: str | None = None


@dataclass
class CatalogElement:
    id: int
    catalog_id: int
    name: str
    created_by: int
    updated_by: int
    created_at: int
    updated_at: int
    is_deleted: bool = False
    custom_fields_values: CfValues = field(default_factory=list)


@dataclass
class Event:
    id: str
    type: str
    entity_id: int
    entity_type: str  # lead | contact | company | task | catalog_{id}
    created_by: int
    created_at: int
    value_before: list[dict[str, Any]]
    value_after: list[dict[str, Any]]


@dataclass
class WebhookRecord:
    id: int
    destination: str
    settings: list[str]
    sort: int
    created_by: int
    created_at: int
    updated_at: int
    disabled: bool = False


@dataclass
class TaskType:
    id: int
    name: str
    code: str | None
    color: str | None = None
    icon_id: int | None = None
