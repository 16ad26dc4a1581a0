"""``/api/v4/account``, ``/api/v4/users``, ``/api/v4/events`` and ``/api/v4/events/types``."""

from __future__ import annotations

from typing import Any

from kommo_sandbox import representations
from kommo_sandbox.api.base import Context, hal_list, in_range, range_filter, self_ref
from kommo_sandbox.entities import Event
from kommo_sandbox.errors import ApiError
from kommo_sandbox.http import Response, Router, as_dict, as_int_list, as_list, json_response, no_content

EVENTS_PER_PAGE = 100

# (key, legacy numeric type, English label) — what GET /events/types lists.
EVENT_TYPES = (
    ("lead_added", 1, "New lead"),
    ("lead_deleted", 7, "Lead deleted"),
    ("lead_restored", 8, "Lead restored"),
    ("lead_status_changed", 14, "Lead stage changed"),
    ("lead_linked", 15, "Lead linked"),
    ("lead_unlinked", 16, "Lead unlinked"),
    ("contact_added", 17, "New contact"),
    ("contact_deleted", 18, "Contact deleted"),
    ("contact_restored", 19, "Contact restored"),
    ("company_added", 20, "New company"),
    ("company_deleted", 21, "Company deleted"),
    ("company_restored", 22, "Company restored"),
    ("custom_field_value_changed", 24, "Field value changed"),
    ("entity_responsible_changed", 25, "Responsible user changed"),
    ("common_note_added", 27, "New note"),
    ("attachment_note_added", 28, "File added"),
    ("service_note_added", 29, "New system note"),
    ("geo_note_added", 30, "New geolocation note"),
    ("incoming_call", 31, "Incoming call"),
    ("outgoing_call", 32, "Outgoing call"),
    ("incoming_sms", 33, "Incoming SMS"),
    ("outgoing_sms", 34, "Outgoing SMS"),
    ("task_added", 40, "New task"),
    ("task_deleted", 41, "Task deleted"),
    ("task_completed", 42, "Task completed"),
    ("task_type_changed", 43, "Task type changed"),
    ("task_text_changed", 44, "Task text changed"),
    ("task_deadline_changed", 45, "Task deadline changed"),
    ("catalog_element_added", 52, "List element added"),
    ("entity_tag_added", 63, "Tags added"),
    ("entity_tag_deleted", 64, "Tags removed"),
    ("sale_field_changed", 69, "Sale field changed"),
    ("name_field_changed", 70, "Name changed"),
    ("entity_linked", 72, "Linked"),
    ("entity_unlinked", 73, "Unlinked"),
    ("entity_merged", 74, "Merged"),
    ("incoming_chat_message", 89, "Incoming chat message"),
    ("outgoing_chat_message", 90, "Outgoing chat message"),
)


def account_get(ctx: Context) -> Response:
    account = ctx.account
    with_ = ctx.with_()
    data: dict[str, Any] = {
        "id": account.id,
        "name": account.name,
        "subdomain": account.subdomain,
        "created_at": account.created_at,
        "created_by": 0,
        "updated_at": account.created_at,
        "updated_by": 0,
        "current_user_id": ctx.user_id,
        "country": account.country,
        "currency": account.currency,
        "currency_symbol": account.currency_symbol,
        "customers_mode": "disabled",
        "is_unsorted_on": any(p.is_unsorted_on for p in account.pipelines.values()),
        "mobile_feature_version": 0,
        "is_loss_reason_enabled": bool(account.loss_reasons),
        "is_helpbot_enabled": False,
        "is_technical_account": True,
        "contact_name_display_order": 1,
    }
    if "amojo_id" in with_:
        data["amojo_id"] = f"20000000-0000-4000-8000-{account.id:012d}"
    if "uuid" in with_:
        data["uuid"] = f"30000000-0000-4000-8000-{account.id:012d}"
    if "version" in with_:
        data["version"] = 1
    if "is_api_filter_enabled" in with_:
        data["is_api_filter_enabled"] = False
    if "drive_url" in with_:
        data["drive_url"] = f"{ctx.origin}/drive"
    data["_links"] = self_ref(ctx, "/api/v4/account")
    embedded: dict[str, Any] = {}
    if "amojo_rights" in with_:
        embedded["amojo_rights"] = {"can_direct": True, "can_create_groups": True}
    if "users_groups" in with_:
        embedded["users_groups"] = [{"id": 0, "name": "Sales", "uuid": None}] + [
            {"id": g.id, "name": g.name, "uuid": None} for g in account.groups.values()
        ]
    if "task_types" in with_:
        embedded["task_types"] = [
            {"id": t.id, "name": t.name, "color": t.color, "icon_id": t.icon_id, "code": t.code}
            for t in account.task_types.values()
        ]
    if "entity_names" in with_:
        embedded["entity_names"] = {
            "leads": {"en": {"singular_form": {"default": "lead"}, "plural_form": {"default": "leads"}}}
        }
    if "datetime_settings" in with_:
        embedded["datetime_settings"] = {
            "date_pattern": "m/d/Y H:i",
            "short_date_pattern": "m/d/Y",
            "short_time_pattern": "H:i",
            "date_format": "m/d/Y",
            "time_format": "H:i",
            "timezone": account.timezone,
            "timezone_offset": "-05:00",
        }
    if embedded:
        data["_embedded"] = embedded
    return json_response(data)


def users_list(ctx: Context) -> Response:
    ctx.require_admin()
    with_ = ctx.with_()
    items = sorted(ctx.account.users.values(), key=lambda u: u.id)
    return hal_list(
        ctx, "users", items, lambda u: representations.user(ctx.account, ctx.origin, u, with_), totals=True
    )


def user_get(ctx: Context, id: int) -> Response:
    user = ctx.account.users.get(id)
    if user is None:
        return no_content()
    return json_response(representations.user(ctx.account, ctx.origin, user, ctx.with_()))


def _statuses_filter(value: Any) -> set[tuple[int, int]] | None:
    if not isinstance(value, dict) or "leads_statuses" not in value:
        return None
    pairs = set()
    for item in as_list(value["leads_statuses"]):
        if isinstance(item, dict):
            pairs.add((int(item.get("pipeline_id", 0)), int(item.get("status_id", 0))))
    return pairs


def _value_matches(
    values: list[dict[str, Any]], statuses: set[tuple[int, int]] | None, responsible: set[int] | None
) -> bool:
    if statuses is not None:
        found = {
            (v["lead_status"]["pipeline_id"], v["lead_status"]["id"]) for v in values if "lead_status" in v
        }
        if not found & statuses:
            return False
    if responsible is not None:
        found_users = {v["responsible_user"]["id"] for v in values if "responsible_user" in v}
        if not found_users & responsible:
            return False
    return True


def _type_matches(event: Event, types: set[str]) -> bool:
    if event.type in types:
        return True
    if event.type == "custom_field_value_changed":
        fields = {v["custom_field_value"]["field_id"] for v in event.value_after + event.value_before}
        return any(f"custom_field_{field_id}_value_changed" in types for field_id in fields)
    return False


def events_list(ctx: Context) -> Response:
    filters = as_dict(ctx.query.get("filter"))
    ids = set(as_list(filters.get("id"))) if "id" in filters else None
    if ids is not None and len(ids) > EVENTS_PER_PAGE:
        raise ApiError(400, f"filter[id] accepts at most {EVENTS_PER_PAGE} ids")
    types = set(as_list(filters.get("type"))) if "type" in filters else None
    entities = set(as_list(filters.get("entity"))) if "entity" in filters else None
    entity_ids = set(as_int_list(filters.get("entity_id"))) if "entity_id" in filters else None
    created_by = set(as_int_list(filters.get("created_by"))) if "created_by" in filters else None
    created = range_filter(filters.get("created_at"))
    after_value, before_value = filters.get("value_after"), filters.get("value_before")

    def responsible_of(value: Any) -> set[int] | None:
        if isinstance(value, dict) and "responsible_user_id" in value:
            return set(as_int_list(value["responsible_user_id"]))
        return None

    after_statuses, before_statuses = _statuses_filter(after_value), _statuses_filter(before_value)
    after_users, before_users = responsible_of(after_value), responsible_of(before_value)

    def check(event: Event) -> bool:
        return (
            (ids is None or event.id in ids)
            and (types is None or _type_matches(event, types))
            and (entities is None or event.entity_type in entities)
            and (entity_ids is None or event.entity_id in entity_ids)
            and (created_by is None or event.created_by in created_by)
            and in_range(event.created_at, created)
            and _value_matches(event.value_after, after_statuses, after_users)
            and _value_matches(event.value_before, before_statuses, before_users)
        )

    items = [e for e in ctx.account.events.values() if check(e)]
    order = ctx.query.get("order")
    if isinstance(order, dict) and str(order.get("created_at", order.get("id", "asc"))).lower() == "desc":
        items.reverse()
    return hal_list(
        ctx,
        "events",
        items,
        lambda e: representations.event(ctx.account, ctx.origin, e),
        max_limit=EVENTS_PER_PAGE,
    )


def event_get(ctx: Context, id: str) -> Response:
    event = ctx.account.events.get(str(id))
    if event is None:
        return no_content()
    return json_response(representations.event(ctx.account, ctx.origin, event))


def event_types(ctx: Context) -> Response:
    items = [{"key": key, "type": number, "lang": label} for key, number, label in EVENT_TYPES]
    return json_response(
        {
            "_total_items": len(items),
            "_links": self_ref(ctx, "/api/v4/events/types"),
            "_embedded": {"events_types": items},
        }
    )


def register(router: Router) -> None:
    router.add("GET", r"/api/v4/account", account_get)
    router.add("GET", r"/api/v4/users", users_list)
    router.add("GET", r"/api/v4/users/(?P<id>\d+)", user_get)
    router.add("GET", r"/api/v4/events/types", event_types)
    router.add("GET", r"/api/v4/events", events_list)
    router.add("GET", r"/api/v4/events/(?P<id>[0-9a-z]+)", event_get)
