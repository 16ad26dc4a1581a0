"""``/api/v4/catalogs`` and links (``/{entity}/{id}/link|unlink|links``, ``/leads/link``)."""

from __future__ import annotations

from typing import Any

from kommo_sandbox import representations
from kommo_sandbox.api.base import (
    Context,
    body_list,
    body_object,
    cf_texts,
    hal_list,
    id_filter,
    matches_query,
    self_ref,
    write_response,
)
from kommo_sandbox.entities import Catalog
from kommo_sandbox.errors import not_found
from kommo_sandbox.http import Response, Router, as_dict, as_int, as_int_list, json_response, no_content
from kommo_sandbox.services import catalogs as services

LINKABLE = r"(?P<kind>leads|contacts|companies)"


def _catalog(ctx: Context, catalog_id: int) -> Catalog:
    catalog = ctx.account.catalogs.get(catalog_id)
    if catalog is None:
        raise not_found()
    return catalog


def catalogs_list(ctx: Context) -> Response:
    items = sorted(ctx.account.catalogs.values(), key=lambda c: (c.sort, c.id))
    return hal_list(ctx, "catalogs", items, lambda c: representations.catalog(ctx.account, ctx.origin, c))


def catalog_get(ctx: Context, id: int) -> Response:
    catalog = ctx.account.catalogs.get(id)
    if catalog is None:
        return no_content()
    return json_response(representations.catalog(ctx.account, ctx.origin, catalog))


def catalogs_create(ctx: Context) -> Response:
    items = body_list(ctx)
    ctx.require_admin()
    created = services.catalogs_create(ctx.store, ctx.account, ctx.user_id, items)
    entries = [
        {**representations.catalog(ctx.account, ctx.origin, c), "request_id": rid} for c, rid in created
    ]
    return write_response(ctx, "catalogs", entries)


def catalogs_update(ctx: Context) -> Response:
    items = body_list(ctx)
    ctx.require_admin()
    entries = []
    for item in items:
        catalog = _catalog(ctx, item.get("id", 0) if isinstance(item, dict) else 0)
        services.catalog_update(ctx.store, ctx.account, catalog, item, ctx.user_id)
        entries.append(representations.catalog(ctx.account, ctx.origin, catalog))
    return write_response(ctx, "catalogs", entries)


def catalog_update_one(ctx: Context, id: int) -> Response:
    ctx.require_admin()
    catalog = _catalog(ctx, id)
    services.catalog_update(ctx.store, ctx.account, catalog, body_object(ctx), ctx.user_id)
    return json_response(representations.catalog(ctx.account, ctx.origin, catalog))


def elements_list(ctx: Context, id: int) -> Response:
    catalog = _catalog(ctx, id)
    filters = as_dict(ctx.query.get("filter"))
    ids = id_filter(filters.get("id"))
    query = str(ctx.query.get("query", "")).strip()
    items = [
        e
        for e in ctx.account.elements.values()
        if e.catalog_id == catalog.id
        and not e.is_deleted
        and (ids is None or e.id in ids)
        and (not query or matches_query(query, [e.name, *cf_texts(e.custom_fields_values)]))
    ]
    return hal_list(ctx, "elements", items, lambda e: representations.element(ctx.account, ctx.origin, e))


def element_get(ctx: Context, id: int, element_id: int) -> Response:
    element = ctx.account.elements.get(element_id)
    if element is None or element.catalog_id != id or element.is_deleted:
        return no_content()
    return json_response(representations.element(ctx.account, ctx.origin, element))


def elements_create(ctx: Context, id: int) -> Response:
    catalog = _catalog(ctx, id)
    created = services.elements_create(ctx.store, ctx.account, catalog, ctx.user_id, body_list(ctx))
    entries = [
        {**representations.element(ctx.account, ctx.origin, e), "request_id": rid} for e, rid in created
    ]
    for entry in entries:
        entry["_links"] = entry.pop("_links")
    return write_response(ctx, "elements", entries)


def elements_update(ctx: Context, id: int) -> Response:
    catalog = _catalog(ctx, id)
    updated = services.elements_update(ctx.store, ctx.account, catalog, ctx.user_id, body_list(ctx))
    entries = [representations.element(ctx.account, ctx.origin, e) for e, _ in updated]
    return write_response(ctx, "elements", entries)


def element_update_one(ctx: Context, id: int, element_id: int) -> Response:
    catalog = _catalog(ctx, id)
    item = {**body_object(ctx), "id": element_id}
    ((element, _),) = services.elements_update(ctx.store, ctx.account, catalog, ctx.user_id, [item])
    return json_response(representations.element(ctx.account, ctx.origin, element))


# --- links --------------------------------------------------------------------------------------------------


def _links_response(ctx: Context, rows: list[dict[str, Any]], path: str) -> Response:
    return json_response(
        {"_total_items": len(rows), "_links": self_ref(ctx, path), "_embedded": {"links": rows}}
    )


def _source(ctx: Context, kind: str, id: int) -> tuple[str, int]:
    record = getattr(ctx.account, kind).get(id)
    if record is None:
        raise not_found()
    return kind, id


def link(ctx: Context, kind: str, id: int) -> Response:
    source = _source(ctx, kind, id)
    rows = services.link_entities(ctx.store, ctx.account, ctx.user_id, body_list(ctx), source)
    return _links_response(ctx, rows, f"/api/v4/{kind}/{id}/links")


def unlink(ctx: Context, kind: str, id: int) -> Response:
    source = _source(ctx, kind, id)
    services.unlink_entities(ctx.store, ctx.account, ctx.user_id, body_list(ctx), source)
    return no_content()


def mass_link(ctx: Context, kind: str) -> Response:
    rows = services.link_entities(ctx.store, ctx.account, ctx.user_id, body_list(ctx), None)
    return _links_response(ctx, rows, f"/api/v4/{kind}/links")


def mass_unlink(ctx: Context, kind: str) -> Response:
    services.unlink_entities(ctx.store, ctx.account, ctx.user_id, body_list(ctx), None)
    return no_content()


def _link_rows(ctx: Context, source: tuple[str, int], with_source: bool) -> list[dict[str, Any]]:
    filters = as_dict(ctx.query.get("filter"))
    to_id = as_int(filters.get("to_entity_id"))
    to_type = filters.get("to_entity_type")
    to_catalog = as_int(filters.get("to_catalog_id"))
    rows = []
    for (other_type, other_id), meta in ctx.account.links.linked(source):
        if (to_id is not None and other_id != to_id) or (to_type and other_type != to_type):
            continue
        if to_catalog is not None and (
            other_type != "catalog_elements" or (meta or {}).get("catalog_id") != to_catalog
        ):
            continue
        metadata = services.response_metadata(ctx.account, source, (other_type, other_id))
        row = {"to_entity_id": other_id, "to_entity_type": other_type, "metadata": metadata}
        if with_source:
            row = {"entity_id": source[1], "entity_type": source[0], **row}
        rows.append(row)
    return rows


def links_list(ctx: Context, kind: str, id: int) -> Response:
    source = _source(ctx, kind, id)
    rows = _link_rows(ctx, source, with_source=False)
    if not rows:
        return no_content()
    return _links_response(ctx, rows, f"/api/v4/{kind}/{id}/links")


def mass_links_list(ctx: Context, kind: str) -> Response:
    filters = as_dict(ctx.query.get("filter"))
    rows = []
    for entity_id in as_int_list(filters.get("entity_id")):
        if entity_id in getattr(ctx.account, kind):
            rows.extend(_link_rows(ctx, (kind, entity_id), with_source=True))
    if not rows:
        return no_content()
    return _links_response(ctx, rows, f"/api/v4/{kind}/links")


def register(router: Router) -> None:
    router.add("GET", r"/api/v4/catalogs", catalogs_list)
    router.add("POST", r"/api/v4/catalogs", catalogs_create)
    router.add("PATCH", r"/api/v4/catalogs", catalogs_update)
    router.add("GET", r"/api/v4/catalogs/(?P<id>\d+)", catalog_get)
    router.add("PATCH", r"/api/v4/catalogs/(?P<id>\d+)", catalog_update_one)
    router.add("GET", r"/api/v4/catalogs/(?P<id>\d+)/elements", elements_list)
    router.add("POST", r"/api/v4/catalogs/(?P<id>\d+)/elements", elements_create)
    router.add("PATCH", r"/api/v4/catalogs/(?P<id>\d+)/elements", elements_update)
    router.add("GET", r"/api/v4/catalogs/(?P<id>\d+)/elements/(?P<element_id>\d+)", element_get)
    router.add("PATCH", r"/api/v4/catalogs/(?P<id>\d+)/elements/(?P<element_id>\d+)", element_update_one)
    router.add("POST", rf"/api/v4/{LINKABLE}/link", mass_link)
    router.add("POST", rf"/api/v4/{LINKABLE}/unlink", mass_unlink)
    router.add("GET", rf"/api/v4/{LINKABLE}/links", mass_links_list)
    router.add("POST", rf"/api/v4/{LINKABLE}/(?P<id>\d+)/link", link)
    router.add("POST", rf"/api/v4/{LINKABLE}/(?P<id>\d+)/unlink", unlink)
    router.add("GET", rf"/api/v4/{LINKABLE}/(?P<id>\d+)/links", links_list)
