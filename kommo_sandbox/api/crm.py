"""``/api/v4/leads``, ``/contacts``, ``/companies``: lists, one entity, writes, ``/leads/complex``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kommo_sandbox import representations
from kommo_sandbox.api.base import (
    Context,
    body_list,
    body_object,
    cf_texts,
    hal_list,
    id_filter,
    in_range,
    matches_query,
    ordered,
    range_filter,
    self_ref,
    write_response,
)
from kommo_sandbox.entities import Company, Contact, Lead
from kommo_sandbox.errors import ApiError, not_found
from kommo_sandbox.http import Response, Router, as_int_list, as_list, json_response, no_content
from kommo_sandbox.services import leads as lead_services
from kommo_sandbox.services import parties

ENTITY = r"(?P<kind>leads|contacts|companies)"


def _user_filter(value: Any) -> set[int] | None:
    return set(as_int_list(value)) if value is not None else None


def _common_matches(
    filters: dict[str, Any], range_keys: tuple[str, ...]
) -> Callable[[Lead | Contact | Company], bool]:
    """The filters leads, contacts and companies share: id, name, the users and the date ranges."""
    ids = id_filter(filters.get("id"))
    names = {str(n) for n in as_list(filters.get("name"))} if "name" in filters else None
    created_by = _user_filter(filters.get("created_by"))
    updated_by = _user_filter(filters.get("updated_by"))
    responsible = _user_filter(filters.get("responsible_user_id"))
    ranges = {key: range_filter(filters.get(key)) for key in range_keys}

    def check(record: Lead | Contact | Company) -> bool:
        return (
            (ids is None or record.id in ids)
            and (names is None or record.name in names)
            and (created_by is None or record.created_by in created_by)
            and (updated_by is None or record.updated_by in updated_by)
            and (responsible is None or record.responsible_user_id in responsible)
            and all(in_range(getattr(record, key), bounds) for key, bounds in ranges.items())
        )

    return check


def _lead_matches(ctx: Context, filters: dict[str, Any]) -> Any:
    account = ctx.account
    common = _common_matches(filters, ("created_at", "updated_at", "closed_at", "closest_task_at"))
    price = filters.get("price")
    price_range = range_filter(price) if isinstance(price, dict) else None
    exact_price = int(price) if isinstance(price, str) and price.lstrip("-").isdigit() else None
    pipelines = _user_filter(filters.get("pipeline_id"))
    statuses = filters.get("statuses")
    pairs = None
    if statuses is not None:
        pairs = set()
        for item in as_list(statuses):
            if not isinstance(item, dict):
                raise ApiError(400, "filter[statuses] needs pipeline_id and status_id")
            pairs.add((int(item.get("pipeline_id", 0)), int(item.get("status_id", 0))))
    query = str(ctx.query.get("query", "")).strip()

    def check(lead: Lead) -> bool:
        if not common(lead):
            return False
        if exact_price is not None and lead.price != exact_price:
            return False
        if price_range is not None and not in_range(lead.price, price_range):
            return False
        if pipelines is not None and lead.pipeline_id not in pipelines:
            return False
        if pairs is not None and (lead.pipeline_id, lead.status_id) not in pairs:
            return False
        if query:
            texts = [lead.name, str(lead.id), str(lead.price), *cf_texts(lead.custom_fields_values)]
            texts += [account.tags[t].name for t in lead.tag_ids if t in account.tags]
            return matches_query(query, texts)
        return True

    return check


def _filters(ctx: Context) -> dict[str, Any]:
    filters = ctx.query.get("filter", {})
    if not isinstance(filters, dict):
        raise ApiError(400, "Invalid filter")
    return filters


def leads_list(ctx: Context) -> Response:
    with_ = ctx.with_()
    check = _lead_matches(ctx, _filters(ctx))
    only_deleted = "only_deleted" in with_
    items = [lead for lead in ctx.account.leads.values() if lead.is_deleted == only_deleted and check(lead)]
    items = ordered(items, ctx, ("created_at", "updated_at", "id"))
    if only_deleted:
        return hal_list(ctx, "leads", items, lambda lead: representations.deleted_lead(ctx.origin, lead))
    return hal_list(
        ctx, "leads", items, lambda lead: representations.lead(ctx.account, ctx.origin, lead, with_)
    )


def _party_matches(ctx: Context, kind: str, filters: dict[str, Any]) -> Any:
    account = ctx.account
    common = _common_matches(filters, ("created_at", "updated_at", "closest_task_at"))
    query = str(ctx.query.get("query", "")).strip()
    phone_fields = {f.id for f in account.fields_for(kind).values() if f.code == "PHONE"}

    def check(record: Contact | Company) -> bool:
        if not common(record):
            return False
        if query:
            texts = [record.name, str(record.id), *cf_texts(record.custom_fields_values)]
            if isinstance(record, Contact):
                texts += [record.first_name, record.last_name]
            phones = [
                str(v.get("value", ""))
                for item in record.custom_fields_values
                if item["field_id"] in phone_fields
                for v in item["values"]
            ]
            return matches_query(query, texts, phones)
        return True

    return check


def _party_serializer(ctx: Context, kind: str, with_: set[str]) -> Any:
    if kind == "contacts":
        return lambda record: representations.contact(ctx.account, ctx.origin, record, with_)
    return lambda record: representations.company(ctx.account, ctx.origin, record, with_)


def entity_list(ctx: Context, kind: str) -> Response:
    if kind == "leads":
        return leads_list(ctx)
    with_ = ctx.with_()
    only_deleted = "only_deleted" in with_
    check = _party_matches(ctx, kind, _filters(ctx))
    records = getattr(ctx.account, kind).values()
    items = ordered(
        [r for r in records if r.is_deleted == only_deleted and check(r)],
        ctx,
        ("updated_at", "id", "created_at"),
    )
    return hal_list(ctx, kind, items, _party_serializer(ctx, kind, with_))


def entity_get(ctx: Context, kind: str, id: int) -> Response:
    record = getattr(ctx.account, kind).get(id)
    if record is None or record.is_deleted:
        return no_content()
    with_ = ctx.with_()
    if kind == "leads":
        return json_response(representations.lead(ctx.account, ctx.origin, record, with_))
    return json_response(_party_serializer(ctx, kind, with_)(record))


def tags_list(ctx: Context, kind: str) -> Response:
    """``GET /api/v4/{leads|contacts|companies}/tags``: the account's tags of that entity type, by id, 250 a
    page at most; ``filter[id]`` (one or several), ``filter[name]`` (exact, any case) and ``query`` (part of
    the name); 204 when none."""
    filters = _filters(ctx)
    ids = id_filter(filters.get("id"))
    name = filters.get("name")
    query = ctx.query.get("query")
    items = sorted(
        (
            tag
            for tag in ctx.account.tags.values()
            if tag.entity_type == kind
            and (ids is None or tag.id in ids)
            and (not isinstance(name, str) or tag.name.casefold() == name.casefold())
            and (not isinstance(query, str) or matches_query(query, [tag.name]))
        ),
        key=lambda tag: tag.id,
    )
    return hal_list(ctx, "tags", items, lambda tag: {"id": tag.id, "name": tag.name, "color": tag.color})


def _write_entry(ctx: Context, kind: str, record: Any, rid: str | None, updated: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": record.id}
    if updated and kind == "contacts":
        entry["name"] = record.name
    if updated:
        entry["updated_at"] = record.updated_at
    if kind in ("contacts", "companies"):
        entry["is_deleted"] = record.is_deleted
    if kind == "contacts":
        entry["is_unsorted"] = record.is_unsorted
    if rid is not None:
        entry["request_id"] = rid
    entry["_links"] = self_ref(ctx, f"/api/v4/{kind}/{record.id}")
    return entry


def _party_kind(kind: str) -> parties.Kind:
    if not parties.is_kind(kind):
        raise not_found()  # the routes let only leads, contacts and companies through
    return kind


def _write(
    ctx: Context, kind: str, items: list[Any], *, update: bool
) -> Sequence[tuple[Lead | Contact | Company, str]]:
    """Create or update leads, contacts or companies. Every API handler runs under the store's lock."""
    if kind == "leads":
        write_leads = lead_services.leads_update if update else lead_services.leads_create
        return write_leads(ctx.store, ctx.account, ctx.user_id, items)
    write_parties = parties.parties_update if update else parties.parties_create
    return write_parties(ctx.store, ctx.account, _party_kind(kind), ctx.user_id, items)


def entity_create(ctx: Context, kind: str) -> Response:
    created = _write(ctx, kind, body_list(ctx), update=False)
    return write_response(ctx, kind, [_write_entry(ctx, kind, record, rid, False) for record, rid in created])


def entity_update(ctx: Context, kind: str) -> Response:
    updated = _write(ctx, kind, body_list(ctx), update=True)
    return write_response(ctx, kind, [_write_entry(ctx, kind, record, rid, True) for record, rid in updated])


def entity_update_one(ctx: Context, kind: str, id: int) -> Response:
    """``PATCH /{kind}/{id}``: an object body; the flat ``{id, updated_at, _links}`` answer."""
    ((record, _),) = _write(ctx, kind, [{**body_object(ctx), "id": id}], update=True)
    return json_response(_write_entry(ctx, kind, record, None, True))


def leads_complex(ctx: Context) -> Response:
    items = body_list(ctx, max_items=lead_services.COMPLEX_MAX_LEADS)
    results = lead_services.leads_complex(ctx.store, ctx.account, ctx.user_id, items)
    return json_response(results)


def entity_delete(ctx: Context, kind: str, id: int) -> Response:
    """Kommo's REST API cannot delete leads, contacts or companies."""
    raise ApiError(405, "Method Not Allowed")


def register(router: Router) -> None:
    router.add("POST", r"/api/v4/leads/complex", leads_complex)
    router.add("GET", rf"/api/v4/{ENTITY}", entity_list)
    router.add("GET", rf"/api/v4/{ENTITY}/tags", tags_list)
    router.add("POST", rf"/api/v4/{ENTITY}", entity_create)
    router.add("PATCH", rf"/api/v4/{ENTITY}", entity_update)
    router.add("GET", rf"/api/v4/{ENTITY}/(?P<id>\d+)", entity_get)
    router.add("PATCH", rf"/api/v4/{ENTITY}/(?P<id>\d+)", entity_update_one)
    router.add("DELETE", rf"/api/v4/{ENTITY}/(?P<id>\d+)", entity_delete)
