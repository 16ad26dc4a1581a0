"""Account setup: pipelines, stages, custom field definitions, webhook subscriptions (API.md §7, §8, §12)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from kommo_sandbox.entities import (
    CLOSED_STATUS_IDS,
    LOST_STATUS_ID,
    WON_STATUS_ID,
    CustomField,
    Enum,
    Pipeline,
    Status,
    WebhookRecord,
)
from kommo_sandbox.errors import (
    ApiError,
    Collector,
    FieldError,
    invalid_type,
    not_blank,
    not_supported_choice,
    too_many,
)
from kommo_sandbox.fields import ENUM_TYPES, FIELD_TYPES
from kommo_sandbox.services.common import is_int, request_id_of, validated
from kommo_sandbox.store import Account, SandboxStore

MAX_PIPELINES = 50
MAX_STATUSES = 100
MAX_WEBHOOKS = 100
DEFAULT_STATUS_COLOR = "#99ccff"
WEBHOOK_SETTINGS = (
    "add_lead",
    "update_lead",
    "delete_lead",
    "restore_lead",
    "status_lead",
    "responsible_lead",
    "note_lead",
    "add_contact",
    "update_contact",
    "delete_contact",
    "restore_contact",
    "responsible_contact",
    "note_contact",
    "add_company",
    "update_company",
    "delete_company",
    "restore_company",
    "responsible_company",
    "note_company",
    "add_task",
    "update_task",
    "delete_task",
    "responsible_task",
    "add_talk",
    "update_talk",
    "add_message",
    "add_chat_template_review",
    "add_catalog",
    "update_catalog",
    "delete_catalog",
    "add_unsorted",
    "update_unsorted",
    "delete_unsorted",
)
# Field types each entity can have (Kommo's availability table).
LIST_ONLY_TYPES = ("price", "category", "items", "linked_entity")
NOT_IN_LISTS = ("smart_address", "birthday", "legal_entity", "multitext", "chained_list")


def system_statuses(pipeline_id: int, incoming_id: int | None) -> list[Status]:
    """Incoming (type 1, when the pipeline has one), won 142 and lost 143: present in every pipeline."""
    statuses = [
        Status(WON_STATUS_ID, "Closed - won", 10000, pipeline_id, "#CCFF66", 0, False),
        Status(LOST_STATUS_ID, "Closed - lost", 11000, pipeline_id, "#D5D8DB", 0, False),
    ]
    if incoming_id is not None:
        statuses.insert(0, Status(incoming_id, "Incoming leads", 10, pipeline_id, "#c1c1c1", 1, False))
    return statuses


def _status_patch(raw: Any, path: str, errors: list[FieldError]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        errors.append(invalid_type(path, "array"))
        return {}
    patch: dict[str, Any] = {}
    if "name" in raw:
        if not isinstance(raw["name"], str) or not raw["name"].strip():
            errors.append(not_blank(f"{path}.name"))
        else:
            patch["name"] = raw["name"].strip()
    if "sort" in raw:
        if not is_int(raw["sort"]):
            errors.append(invalid_type(f"{path}.sort", "int"))
        else:
            patch["sort"] = raw["sort"]
    if "color" in raw:
        if not isinstance(raw["color"], str) or not raw["color"].startswith("#"):
            errors.append(not_supported_choice(f"{path}.color"))
        else:
            patch["color"] = raw["color"]
    return patch


def pipelines_create(store: SandboxStore, account: Account, items: list[Any]) -> list[tuple[Pipeline, str]]:
    collector = Collector()
    planned = []
    for index, raw in enumerate(items):
        errors: list[FieldError] = []
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"].strip():
            errors.append(not_blank("name"))
            collector.add(request_id_of(raw, index), errors)
            continue
        statuses = (raw.get("_embedded") or {}).get("statuses", [])
        if not isinstance(statuses, list):
            errors.append(invalid_type("_embedded.statuses", "array"))
            statuses = []
        patches = [
            (
                s.get("id") if isinstance(s, dict) else None,
                _status_patch(s, f"_embedded.statuses.{i}", errors),
            )
            for i, s in enumerate(statuses)
        ]
        if len(statuses) + 3 > MAX_STATUSES:
            errors.append(too_many("_embedded.statuses", MAX_STATUSES - 3))
        collector.add(request_id_of(raw, index), errors)
        planned.append((raw, patches, request_id_of(raw, index)))
    collector.raise_if_any()
    if len(account.pipelines) + len(planned) > MAX_PIPELINES:
        raise ApiError(400, f"Maximum {MAX_PIPELINES} pipelines per account")
    created = []
    for raw, patches, rid in planned:
        pipeline_id = store.next_id("pipeline")
        unsorted = raw.get("is_unsorted_on", True) is not False
        pipeline = Pipeline(
            id=pipeline_id,
            name=raw["name"].strip(),
            sort=raw["sort"] if is_int(raw.get("sort")) else (len(account.pipelines) + 1) * 10,
            is_main=False,
            is_unsorted_on=unsorted,
            statuses=system_statuses(pipeline_id, store.next_id("status") if unsorted else None),
        )
        sort = 20
        for status_id, patch in patches:
            existing = pipeline.status(status_id) if status_id in CLOSED_STATUS_IDS else None
            if existing is not None:
                existing.name = patch.get("name", existing.name)
                continue
            pipeline.statuses.append(
                Status(
                    store.next_id("status"),
                    patch.get("name", "Stage"),
                    patch.get("sort", sort),
                    pipeline_id,
                    patch.get("color", DEFAULT_STATUS_COLOR),
                )
            )
            sort = patch.get("sort", sort) + 10
        if raw.get("is_main") is True:
            for other in account.pipelines.values():
                other.is_main = False
            pipeline.is_main = True
        account.pipelines[pipeline.id] = pipeline
        created.append((pipeline, rid))
    store.touch()
    return created


def pipeline_update(store: SandboxStore, account: Account, pipeline: Pipeline, raw: Any) -> None:
    if not isinstance(raw, dict):
        raise ApiError(400, "Request data can not be empty")
    errors: list[FieldError] = []
    if "name" in raw and (not isinstance(raw["name"], str) or not raw["name"].strip()):
        errors.append(not_blank("name"))
    if "sort" in raw and not is_int(raw["sort"]):
        errors.append(invalid_type("sort", "int"))
    collector = Collector()
    collector.add("0", errors)
    collector.raise_if_any()
    pipeline.name = raw.get("name", pipeline.name).strip()
    pipeline.sort = raw.get("sort", pipeline.sort)
    if isinstance(raw.get("is_unsorted_on"), bool):
        pipeline.is_unsorted_on = raw["is_unsorted_on"]
    if raw.get("is_main") is True:
        for other in account.pipelines.values():
            other.is_main = False
        pipeline.is_main = True
    store.touch()


def pipeline_delete(store: SandboxStore, account: Account, pipeline: Pipeline) -> None:
    if len(account.pipelines) == 1:
        raise ApiError(400, "Cannot delete the last pipeline")
    if any(lead.pipeline_id == pipeline.id and not lead.is_deleted for lead in account.leads.values()):
        raise ApiError(400, "Cannot delete a pipeline with leads")
    del account.pipelines[pipeline.id]
    if pipeline.is_main:
        next(iter(account.pipelines.values())).is_main = True
    store.touch()


def statuses_create(
    store: SandboxStore, account: Account, pipeline: Pipeline, items: list[Any]
) -> list[tuple[Status, str]]:

    def check(raw: Any) -> tuple[dict[str, Any], list[FieldError]]:
        errors: list[FieldError] = []
        patch = _status_patch(raw, "", errors) if isinstance(raw, dict) else {}
        if not patch.get("name"):
            errors.append(not_blank("name"))
        return patch, errors

    planned = validated(items, check)
    if len(pipeline.statuses) + len(planned) > MAX_STATUSES:
        raise ApiError(400, f"Maximum {MAX_STATUSES} statuses per pipeline")
    created = []
    for patch, rid in planned:
        working = [s.sort for s in pipeline.statuses if s.id not in CLOSED_STATUS_IDS]
        status = Status(
            store.next_id("status"),
            patch["name"],
            patch.get("sort", max(working, default=10) + 10),
            pipeline.id,
            patch.get("color", DEFAULT_STATUS_COLOR),
        )
        pipeline.statuses.append(status)
        created.append((status, rid))
    store.touch()
    return created


def status_update(store: SandboxStore, pipeline: Pipeline, status: Status, raw: Any) -> None:
    errors: list[FieldError] = []
    patch = _status_patch(raw, "", errors)
    if not status.is_editable and set(patch) - {"name"}:
        errors.append(not_supported_choice("id"))
    collector = Collector()
    collector.add("0", errors)
    collector.raise_if_any()
    for key, value in patch.items():
        setattr(status, key, value)
    store.touch()


def status_delete(store: SandboxStore, account: Account, pipeline: Pipeline, status: Status) -> None:
    if not status.is_editable:
        raise ApiError(400, "System statuses cannot be deleted")
    if any(
        lead.pipeline_id == pipeline.id and lead.status_id == status.id for lead in account.leads.values()
    ):
        raise ApiError(400, "Cannot delete a status with leads")
    pipeline.statuses.remove(status)
    store.touch()


# --- custom fields ------------------------------------------------------------------------------------------


def _allowed(field_type: str, entity_type: str) -> bool:
    if entity_type == "catalogs":
        return field_type not in NOT_IN_LISTS
    if field_type in LIST_ONLY_TYPES:
        return False
    if field_type == "multitext":
        return entity_type in ("contacts", "companies")
    if field_type == "chained_list":
        return entity_type == "leads"
    return field_type in FIELD_TYPES and field_type not in ("payer", "supplier")


def _enum_patch(raw: Any, path: str, errors: list[FieldError]) -> list[dict[str, Any]] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        errors.append(invalid_type(path, "array"))
        return None
    out = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("value"), str) or not item["value"].strip():
            errors.append(not_blank(f"{path}.{index}.value"))
            continue
        out.append(item)
    return out


def _apply_enums(store: SandboxStore, field: CustomField, enums: list[dict[str, Any]]) -> None:
    """Enums sent with an ``id`` are updated, without one created; enums not sent are removed."""
    current = {e.id: e for e in field.enums or []}
    result = []
    for index, item in enumerate(enums):
        sort = item["sort"] if is_int(item.get("sort")) else (index + 1) * 10
        enum_id = item.get("id")
        enum = current.get(enum_id) if is_int(enum_id) else None
        if enum is None:
            enum = Enum(store.next_id("enum"), item["value"].strip(), sort, item.get("code"))
        else:
            enum.value, enum.sort = item["value"].strip(), sort
            enum.code = item.get("code", enum.code)
        result.append(enum)
    field.enums = result


def _validate_field(
    account: Account, entity_type: str, raw: Any, existing: CustomField | None
) -> tuple[dict[str, Any], list[FieldError]]:
    if not isinstance(raw, dict):
        return {}, [invalid_type("", "array")]
    errors: list[FieldError] = []
    patch: dict[str, Any] = {}
    if "name" in raw or existing is None:
        if not isinstance(raw.get("name"), str) or not raw["name"].strip():
            errors.append(not_blank("name"))
        else:
            patch["name"] = raw["name"].strip()
    if existing is None:
        field_type = raw.get("type")
        if field_type not in FIELD_TYPES or not _allowed(field_type, entity_type):
            errors.append(not_supported_choice("type"))
        patch["type"] = field_type
    if "sort" in raw:
        if not is_int(raw["sort"]):
            errors.append(invalid_type("sort", "int"))
        else:
            patch["sort"] = raw["sort"]
    if "code" in raw:
        if raw["code"] is not None and not isinstance(raw["code"], str):
            errors.append(invalid_type("code", "string"))
        else:
            patch["code"] = raw["code"]
    if "enums" in raw:
        patch["enums"] = _enum_patch(raw["enums"], "enums", errors)
    for key in ("required_statuses", "hidden_statuses"):
        if key in raw:
            statuses = raw[key] or []
            if not isinstance(statuses, list) or any(
                not isinstance(s, dict)
                or account.find_status(s.get("pipeline_id", 0), s.get("status_id", 0)) is None
                for s in statuses
            ):
                errors.append(not_supported_choice(key))
            else:
                patch[key] = [
                    {"status_id": s["status_id"], "pipeline_id": s["pipeline_id"]} for s in statuses
                ]
    for key in ("is_api_only", "is_visible", "is_required"):
        if isinstance(raw.get(key), bool):
            patch[key] = raw[key]
    for key in (
        "remind",
        "currency",
        "tracking_callback",
        "search_in",
        "settings",
        "group_id",
        "chained_lists",
    ):
        if key in raw:
            patch[key] = raw[key]
    return patch, errors


def fields_create(
    store: SandboxStore, account: Account, entity_type: str, items: list[Any], catalog_id: int | None = None
) -> list[tuple[CustomField, str]]:
    planned = validated(items, lambda raw: _validate_field(account, entity_type, raw, None))
    created = []
    for patch, rid in planned:
        enums = patch.pop("enums", None)
        field = CustomField(
            id=store.next_id("field"), entity_type=entity_type, catalog_id=catalog_id, **patch
        )
        if field.type in ENUM_TYPES:
            _apply_enums(store, field, enums or [])
        account.fields[field.id] = field
        created.append((field, rid))
    store.touch()
    return created


def fields_update(
    store: SandboxStore, account: Account, entity_type: str, fields: list[tuple[CustomField, Any]]
) -> None:
    collector = Collector()
    planned = []
    for index, (field, raw) in enumerate(fields):
        patch, errors = _validate_field(account, entity_type, raw, field)
        collector.add(request_id_of(raw, index), errors)
        planned.append((field, patch))
    collector.raise_if_any()
    for field, patch in planned:
        enums = patch.pop("enums", None)
        if field.is_predefined:
            patch.pop("code", None)
        for key, value in patch.items():
            setattr(field, key, value)
        if enums is not None and field.type in ENUM_TYPES:
            _apply_enums(store, field, enums)
    store.touch()


def field_delete(store: SandboxStore, account: Account, field: CustomField) -> None:
    if not field.is_deletable:
        raise ApiError(400, "This field cannot be deleted")
    del account.fields[field.id]
    store.touch()


# --- webhook subscriptions ----------------------------------------------------------------------------------


def _is_web_url(value: str) -> bool:
    parsed = urlparse(value)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def _check_subscription(raw: dict[str, Any]) -> tuple[str, list[str], int]:
    """The destination, the settings (deduplicated, in order) and the sort of a subscription, or 400."""
    errors: list[FieldError] = []
    destination = raw.get("destination")
    if not isinstance(destination, str) or not _is_web_url(destination):
        errors.append(not_supported_choice("destination"))
        destination = ""
    settings = raw.get("settings")
    if not isinstance(settings, list) or not settings:
        errors.append(not_blank("settings"))
        settings = []
    for index, code in enumerate(settings):
        if code not in WEBHOOK_SETTINGS:
            errors.append(not_supported_choice(f"settings.{index}"))
    sort = raw.get("sort", 1)
    if not is_int(sort):
        errors.append(invalid_type("sort", "int"))
        sort = 1
    collector = Collector()
    collector.add("0", errors)
    collector.raise_if_any()
    return destination, list(dict.fromkeys(settings)), sort


def webhook_subscribe(store: SandboxStore, account: Account, user_id: int, raw: Any) -> WebhookRecord:
    """``POST /api/v4/webhooks``: subscribe, or update the settings of an existing destination."""
    if not isinstance(raw, dict):
        raise ApiError(400, "Request data can not be empty")
    destination, settings, sort = _check_subscription(raw)
    now = store.now()
    record = account.webhooks.get(destination)
    if record is None:
        if len(account.webhooks) >= MAX_WEBHOOKS:
            raise ApiError(400, f"Maximum {MAX_WEBHOOKS} webhooks per account")
        record = WebhookRecord(store.next_id("webhook"), destination, settings, sort, user_id, now, now)
        account.webhooks[destination] = record
    else:
        record.settings = settings
        record.sort = sort
        record.disabled = False  # saving the settings re-enables a disabled webhook, as in Kommo's UI
        record.updated_at = now
    store.touch()
    return record


def webhook_unsubscribe(store: SandboxStore, account: Account, raw: Any) -> None:
    if not isinstance(raw, dict) or not isinstance(raw.get("destination"), str):
        raise ApiError(400, "Request data can not be empty")
    account.webhooks.pop(raw["destination"], None)
    store.touch()
