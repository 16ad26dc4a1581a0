"""Pipelines and stages, custom field definitions, webhook subscriptions."""

from __future__ import annotations

from typing import Any

from kommo_sandbox import representations
from kommo_sandbox.api.base import Context, body_list, body_object, hal_list, ordered, self_ref
from kommo_sandbox.entities import CustomField, Pipeline, Status
from kommo_sandbox.errors import not_found
from kommo_sandbox.http import Response, Router, as_dict, as_list, json_response, no_content
from kommo_sandbox.services import setup as services
from kommo_sandbox.services.common import is_int

FIELD_OWNER = r"(?P<kind>leads|contacts|companies)"
CUSTOM_FIELDS_PER_PAGE = 50


def _pipeline(ctx: Context, pipeline_id: int) -> Pipeline:
    pipeline = ctx.account.pipelines.get(pipeline_id)
    if pipeline is None:
        raise not_found()
    return pipeline


def _status(pipeline: Pipeline, status_id: int) -> Status:
    status = pipeline.status(status_id)
    if status is None:
        raise not_found()
    return status


def _collection(ctx: Context, key: str, items: list[dict[str, Any]]) -> Response:
    return json_response(
        {"_total_items": len(items), "_links": self_ref(ctx, ctx.request.path), "_embedded": {key: items}}
    )


def pipelines_list(ctx: Context) -> Response:
    with_ = ctx.with_()
    items = sorted(ctx.account.pipelines.values(), key=lambda p: (p.sort, p.id))
    return _collection(
        ctx, "pipelines", [representations.pipeline(ctx.account, ctx.origin, p, with_) for p in items]
    )


def pipeline_get(ctx: Context, id: int) -> Response:
    return json_response(representations.pipeline(ctx.account, ctx.origin, _pipeline(ctx, id), ctx.with_()))


def pipelines_create(ctx: Context) -> Response:
    items = body_list(ctx)
    ctx.require_admin()
    created = services.pipelines_create(ctx.store, ctx.account, items)
    entries = [
        {**representations.pipeline(ctx.account, ctx.origin, p), "request_id": rid} for p, rid in created
    ]
    return _collection(ctx, "pipelines", entries)


def pipeline_update(ctx: Context, id: int) -> Response:
    ctx.require_admin()
    pipeline = _pipeline(ctx, id)
    services.pipeline_update(ctx.store, ctx.account, pipeline, body_object(ctx))
    return json_response(representations.pipeline(ctx.account, ctx.origin, pipeline))


def pipeline_delete(ctx: Context, id: int) -> Response:
    ctx.require_admin()
    services.pipeline_delete(ctx.store, ctx.account, _pipeline(ctx, id))
    return json_response({})


def statuses_list(ctx: Context, id: int) -> Response:
    pipeline = _pipeline(ctx, id)
    with_ = ctx.with_()
    items = [representations.status(ctx.account, ctx.origin, s, with_) for s in pipeline.ordered_statuses()]
    return _collection(ctx, "statuses", items)


def status_get(ctx: Context, id: int, status_id: int) -> Response:
    status = _status(_pipeline(ctx, id), status_id)
    return json_response(representations.status(ctx.account, ctx.origin, status, ctx.with_()))


def statuses_create(ctx: Context, id: int) -> Response:
    items = body_list(ctx)
    ctx.require_admin()
    created = services.statuses_create(ctx.store, ctx.account, _pipeline(ctx, id), items)
    entries = [
        {**representations.status(ctx.account, ctx.origin, s), "request_id": rid} for s, rid in created
    ]
    return _collection(ctx, "statuses", entries)


def status_update(ctx: Context, id: int, status_id: int) -> Response:
    ctx.require_admin()
    pipeline = _pipeline(ctx, id)
    status = _status(pipeline, status_id)
    services.status_update(ctx.store, pipeline, status, body_object(ctx))
    return json_response(representations.status(ctx.account, ctx.origin, status))


def status_delete(ctx: Context, id: int, status_id: int) -> Response:
    ctx.require_admin()
    pipeline = _pipeline(ctx, id)
    services.status_delete(ctx.store, ctx.account, pipeline, _status(pipeline, status_id))
    return no_content()


# --- custom fields ------------------------------------------------------------------------------------------


def _owner(ctx: Context, kind: str | None, catalog_id: int | None) -> tuple[str, int | None]:
    if catalog_id is not None:
        if catalog_id not in ctx.account.catalogs:
            raise not_found()
        return "catalogs", catalog_id
    return str(kind), None


def _field(ctx: Context, entity_type: str, catalog_id: int | None, field_id: int) -> CustomField:
    field = ctx.account.fields_for(entity_type, catalog_id).get(field_id)
    if field is None:
        raise not_found()
    return field


def _item_id(item: Any) -> int:
    """The ``id`` of a batch item; 0 (no such field) when it has none."""
    item_id = item.get("id") if isinstance(item, dict) else None
    return item_id if is_int(item_id) else 0


def fields_list(ctx: Context, kind: str | None = None, catalog_id: int | None = None) -> Response:
    entity_type, catalog_id = _owner(ctx, kind, catalog_id)
    filters = as_dict(ctx.query.get("filter"))
    types = set(as_list(filters.get("type"))) if "type" in filters else None
    fields = [
        f
        for f in ctx.account.fields_for(entity_type, catalog_id).values()
        if types is None or f.type in types
    ]
    items = ordered(fields, ctx, ("sort", "id"), default="sort")
    return hal_list(
        ctx,
        "custom_fields",
        items,
        lambda f: representations.custom_field(ctx.account, ctx.origin, f),
        max_limit=CUSTOM_FIELDS_PER_PAGE,
        totals=True,
    )


def field_get(ctx: Context, id: int, kind: str | None = None, catalog_id: int | None = None) -> Response:
    entity_type, catalog_id = _owner(ctx, kind, catalog_id)
    return json_response(
        representations.custom_field(ctx.account, ctx.origin, _field(ctx, entity_type, catalog_id, id))
    )


def fields_create(ctx: Context, kind: str | None = None, catalog_id: int | None = None) -> Response:
    items = body_list(ctx)
    ctx.require_admin()
    entity_type, catalog_id = _owner(ctx, kind, catalog_id)
    created = services.fields_create(ctx.store, ctx.account, entity_type, items, catalog_id)
    entries = [
        {**representations.custom_field(ctx.account, ctx.origin, f), "request_id": rid} for f, rid in created
    ]
    for entry in entries:
        entry["_links"] = entry.pop("_links")
    return json_response({"_total_items": len(entries), "_embedded": {"custom_fields": entries}}, 201)


def fields_update(ctx: Context, kind: str | None = None, catalog_id: int | None = None) -> Response:
    items = body_list(ctx)
    ctx.require_admin()
    entity_type, catalog_id = _owner(ctx, kind, catalog_id)
    pairs = [(_field(ctx, entity_type, catalog_id, _item_id(item)), item) for item in items]
    services.fields_update(ctx.store, ctx.account, entity_type, pairs)
    entries = [representations.custom_field(ctx.account, ctx.origin, f) for f, _ in pairs]
    return json_response({"_total_items": len(entries), "_embedded": {"custom_fields": entries}})


def field_update_one(
    ctx: Context, id: int, kind: str | None = None, catalog_id: int | None = None
) -> Response:
    ctx.require_admin()
    entity_type, catalog_id = _owner(ctx, kind, catalog_id)
    field = _field(ctx, entity_type, catalog_id, id)
    services.fields_update(ctx.store, ctx.account, entity_type, [(field, body_object(ctx))])
    return json_response(representations.custom_field(ctx.account, ctx.origin, field))


def field_delete(ctx: Context, id: int, kind: str | None = None, catalog_id: int | None = None) -> Response:
    ctx.require_admin()
    entity_type, catalog_id = _owner(ctx, kind, catalog_id)
    services.field_delete(ctx.store, ctx.account, _field(ctx, entity_type, catalog_id, id))
    return no_content()


# --- webhooks -----------------------------------------------------------------------------------------------


def webhooks_list(ctx: Context) -> Response:
    ctx.require_admin()
    filters = as_dict(ctx.query.get("filter"))
    destination = filters.get("destination")
    items = [
        representations.webhook(ctx.account, w)
        for w in sorted(ctx.account.webhooks.values(), key=lambda w: (w.sort, w.id))
        if destination is None or w.destination == destination
    ]
    if not items:
        return no_content()
    return json_response({"_total_items": len(items), "_embedded": {"webhooks": items}})


def webhook_subscribe(ctx: Context) -> Response:
    ctx.require_admin()
    record = services.webhook_subscribe(ctx.store, ctx.account, ctx.user_id, body_object(ctx))
    return json_response(representations.webhook(ctx.account, record))


def webhook_unsubscribe(ctx: Context) -> Response:
    ctx.require_admin()
    services.webhook_unsubscribe(ctx.store, ctx.account, body_object(ctx))
    return no_content()


def register(router: Router) -> None:
    router.add("GET", r"/api/v4/leads/pipelines", pipelines_list)
    router.add("POST", r"/api/v4/leads/pipelines", pipelines_create)
    router.add("GET", r"/api/v4/leads/pipelines/(?P<id>\d+)", pipeline_get)
    router.add("PATCH", r"/api/v4/leads/pipelines/(?P<id>\d+)", pipeline_update)
    router.add("DELETE", r"/api/v4/leads/pipelines/(?P<id>\d+)", pipeline_delete)
    router.add("GET", r"/api/v4/leads/pipelines/(?P<id>\d+)/statuses", statuses_list)
    router.add("POST", r"/api/v4/leads/pipelines/(?P<id>\d+)/statuses", statuses_create)
    router.add("GET", r"/api/v4/leads/pipelines/(?P<id>\d+)/statuses/(?P<status_id>\d+)", status_get)
    router.add("PATCH", r"/api/v4/leads/pipelines/(?P<id>\d+)/statuses/(?P<status_id>\d+)", status_update)
    router.add("DELETE", r"/api/v4/leads/pipelines/(?P<id>\d+)/statuses/(?P<status_id>\d+)", status_delete)
    for owner in (rf"/api/v4/{FIELD_OWNER}", r"/api/v4/catalogs/(?P<catalog_id>\d+)"):
        router.add("GET", rf"{owner}/custom_fields", fields_list)
        router.add("POST", rf"{owner}/custom_fields", fields_create)
        router.add("PATCH", rf"{owner}/custom_fields", fields_update)
        router.add("GET", rf"{owner}/custom_fields/(?P<id>\d+)", field_get)
        router.add("PATCH", rf"{owner}/custom_fields/(?P<id>\d+)", field_update_one)
        router.add("DELETE", rf"{owner}/custom_fields/(?P<id>\d+)", field_delete)
    router.add("GET", r"/api/v4/webhooks", webhooks_list)
    router.add("POST", r"/api/v4/webhooks", webhook_subscribe)
    router.add("DELETE", r"/api/v4/webhooks", webhook_unsubscribe)
