"""Sync of the local mirror from Kommo: full, incremental by ``updated_at``, and events reconciliation.

One :class:`~apps.kommo.models.SyncState` per (account, resource) keeps the position, so a run that
stops half-way (a crash, Ctrl-C, an error Kommo does not recover from) continues where it stopped:

* full runs of leads, contacts and companies read pages of 250 in id order (``order[id]=asc``: new rows
  go to the end and edited rows stay where they are) and store the last finished page and id after each;
  a resumed run reads that page again (a deletion may have shifted rows back by one) and skips what it
  already wrote;
* incremental runs read ``filter[updated_at][from]`` in ``updated_at`` order, a small overlap before the
  stored cursor, and move the cursor page by page (always asking from the last time seen, so rows edited
  while the run goes on can never push another row past a page boundary unseen);
* the events reconciliation reads ``/events`` from its cursor (100 per page), records the stage history
  with who moved each deal, re-fetches the deals it names in batches of 250 ids and applies deletions;
* the history backfill reads the past moves (``lead_status_changed``) and the past changes of contacts' and
  catalog elements' fields (``custom_field_value_changed``: the stakeholders' roles, approvals, objections)
  of the last N days, once per account, with its own cursor (resource ``history``), apart from the
  reconciliation's.

Writes go through :mod:`apps.kommo.services.mirror` (idempotent, guarded by ``updated_at``), so a sync
can run while webhooks are being processed. The functions take a ``progress`` reporter so that the
management command can draw bars; Celery tasks pass none.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.kommo import types
from apps.kommo.client import IDS_PER_CALL, LEAD_WITH, KommoClient, query_params
from apps.kommo.exceptions import KommoPayloadError
from apps.kommo.models import (
    Catalog,
    CatalogElement,
    CustomField,
    KommoAccount,
    KommoUser,
    Lead,
    Pipeline,
    StageChange,
    SyncState,
)
from apps.kommo.services import mirror
from apps.kommo.webhooks.dispatch import MAIL_NOTE_TYPE, Touch

T = TypeVar("T")

PAGE_SIZE = 250
# What the history backfill reads: deals' moves, and field changes (of contacts and catalog elements).
HISTORY_EVENT_TYPES = ("lead_status_changed", "custom_field_value_changed")
EVENTS_PAGE_SIZE = 100
# Incremental runs start this much before the stored cursor: rows Kommo committed a little late.
OVERLAP = dt.timedelta(seconds=settings.KOMMO_SYNC_OVERLAP_SECONDS)
# Without a cursor, the events reconciliation looks back this far.
EVENTS_LOOKBACK = dt.timedelta(hours=settings.KOMMO_EVENTS_LOOKBACK_HOURS)
LEAD_EVENT_TYPES = (
    "lead_added",
    "lead_deleted",
    "lead_restored",
    "lead_status_changed",
    "entity_responsible_changed",
    "sale_field_changed",
    "name_field_changed",
    "custom_field_value_changed",
    "entity_linked",
    "entity_unlinked",
)
# What the sweep reads as someone in touch with the people behind a deal or a contact: notes, calls and
# SMS (as webhook processing does with ``note_lead`` / ``note_contact``), and completed tasks, of which the
# meetings are touches (the event names only the task: its type and entity are read back).
TOUCH_EVENT_TYPES = ("common_note_added", "incoming_call", "outgoing_call", "incoming_sms", "outgoing_sms")
TASK_COMPLETED = "task_completed"
MEETING_TASK_TYPE = 2
# E-mails are not in Kommo's events log (API.md §11 lists no e-mail event type): the sweep reads them as
# notes of type ``amomail_message`` on deals and contacts (``GET /api/v4/{leads,contacts}/notes`` with
# ``filter[note_type]`` and ``filter[updated_at][from]``), from its own cursor (resource ``mail``).
MAIL_NOTE_ENTITIES = (("leads", "lead"), ("contacts", "contact"))
# The events that name a deal's stage. ``lead_added`` does not: in Kommo its value is a note
# (``[{"note": {"id": N}}]``), so a deal's first stage is derived (:func:`first_stays_record`).
STAGE_EVENT_TYPES = ("lead_status_changed", "lead_added")
# The history backfill reads the events log in windows of this length (the progress bar's steps); each
# window is one fixed, past listing, so an interrupted run resumes at its last finished page.
HISTORY_WINDOW = dt.timedelta(days=30)
# In the order a full sync runs them: what later resources refer to comes first.
RESOURCES = ("pipelines", "users", "catalogs", "custom_fields", "companies", "contacts", "leads")

# What follows the touches the events sweep reads (notes, calls, SMS, completed meetings, e-mails), called
# inside the sweep's transaction: the apps above the boundary are given them (the stakeholders' last touch).
# Webhook processing hands the same touches over in its own flow, so a touch may arrive both ways.
TouchesFollow = Callable[[KommoAccount, Sequence[Touch]], None]
# What follows the past changes of contacts' and catalog elements' fields the history backfill reads, called
# inside the page's transaction once the mirror holds those contacts and elements. The same change may come
# again (a resumed or repeated backfill): what follows must be idempotent.
FieldChangesFollow = Callable[[KommoAccount, Sequence[types.FieldChange]], None]


class Progress(Protocol):
    """What a sync reports while it runs (the management command draws it; tasks pass None)."""

    def start(self, resource: str, total: int | None) -> None: ...

    def advance(self, resource: str, count: int) -> None: ...

    def finish(self, resource: str, result: mirror.BatchResult | HistoryResult) -> None: ...


class _Silent:
    def start(self, resource: str, total: int | None) -> None:
        return None

    def advance(self, resource: str, count: int) -> None:
        return None

    def finish(self, resource: str, result: mirror.BatchResult | HistoryResult) -> None:
        return None


@dataclass(frozen=True)
class _Paged:
    """How to list and upsert one paged resource."""

    path: str
    key: str
    parse: Callable[[dict[str, Any]], Any]
    upsert: Callable[[KommoAccount, Sequence[Any], mirror.MirrorFollow], mirror.BatchResult]
    list_: Callable[[KommoClient, Mapping[str, Any], Mapping[str, str]], Iterator[Any]]
    with_: tuple[str, ...] = ()


_PAGED: dict[str, _Paged] = {
    "leads": _Paged(
        path="/api/v4/leads",
        key="leads",
        parse=types.Lead.from_api,
        upsert=lambda account, items, follow: mirror.leads_upsert_from_kommo(
            account=account, leads=items, source=StageChange.Source.SYNC, follow=follow
        ),
        list_=lambda client, filters, order: client.leads_list(filters, LEAD_WITH, order=order),
        with_=LEAD_WITH,
    ),
    "contacts": _Paged(
        path="/api/v4/contacts",
        key="contacts",
        parse=types.Contact.from_api,
        upsert=lambda account, items, follow: mirror.contacts_upsert_from_kommo(
            account=account, contacts=items, follow=follow
        ),
        list_=lambda client, filters, order: client.contacts_list(filters, order=order),
    ),
    "companies": _Paged(
        path="/api/v4/companies",
        key="companies",
        parse=types.Company.from_api,
        upsert=lambda account, items, follow: mirror.companies_upsert_from_kommo(
            account=account, companies=items
        ),
        list_=lambda client, filters, order: client.companies_list(filters, order=order),
    ),
}


def _state(account: KommoAccount, resource: str) -> SyncState:
    state, _ = SyncState.objects.get_or_create(account=account, resource=resource)
    return state


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _ts(moment: dt.datetime | None) -> int | None:
    """Unix seconds of an aware datetime (a naive one would be read as the server's local time)."""
    return None if moment is None else types.to_timestamp(moment)


def _from_ts(value: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(value, tz=dt.UTC)


# -- the run ---------------------------------------------------------------------------------------------


def account_ids_syncable() -> list[int]:
    """Accounts the beat syncs: connected, and not stopped by Kommo's block."""
    accounts = KommoAccount.objects.filter(blocked_since__isnull=True).order_by("pk")
    return [account.pk for account in accounts if account.is_connected]


def mirror_sync(
    *,
    account: KommoAccount,
    resources: Sequence[str] | None = None,
    full: bool = False,
    since: dt.datetime | None = None,
    client: KommoClient | None = None,
    progress: Progress | None = None,
    follow: mirror.MirrorFollow,
) -> dict[str, mirror.BatchResult]:
    """Sync ``resources`` (default: all, in dependency order). Leads, contacts and companies run full when
    ``full`` is set, when they were never synced, or when an earlier full run is unfinished; otherwise
    incrementally from their cursor (or from ``since``). Returns what each resource changed. ``follow``:
    what follows each page's writes, inside its transaction."""
    unknown = set(resources or ()) - set(RESOURCES)
    if unknown:
        raise ValueError(f"unknown resource(s): {', '.join(sorted(unknown))}; known: {', '.join(RESOURCES)}")
    client = client or KommoClient(account)
    progress = progress or _Silent()
    results: dict[str, mirror.BatchResult] = {}
    for resource in [name for name in RESOURCES if resources is None or name in resources]:
        if resource in _PAGED:
            results[resource] = _paged_sync(
                account=account,
                client=client,
                resource=resource,
                full=full,
                since=since,
                progress=progress,
                follow=follow,
            )
        else:
            results[resource] = _SMALL[resource](
                account=account, client=client, progress=progress, follow=follow
            )
    return results


# -- small resources: read whole every time ----------------------------------------------------------


def pipelines_sync(
    *,
    account: KommoAccount,
    client: KommoClient,
    progress: Progress,
    follow: mirror.MirrorFollow,
) -> mirror.BatchResult:
    progress.start("pipelines", None)
    pipelines = client.pipelines_list()
    result = mirror.pipelines_upsert_from_kommo(account=account, pipelines=pipelines)
    result.updated += mirror.mirror_mark_missing_deleted(
        model=Pipeline, account=account, seen_kommo_ids=[p.id for p in pipelines]
    )
    progress.advance("pipelines", len(pipelines))
    _finish(account, "pipelines", result, progress)
    return result


def users_sync(
    *,
    account: KommoAccount,
    client: KommoClient,
    progress: Progress,
    follow: mirror.MirrorFollow,
) -> mirror.BatchResult:
    progress.start("users", None)
    result = mirror.BatchResult()
    seen: list[int] = []
    for chunk in _chunks(client.users_list(), PAGE_SIZE):
        result.add(mirror.users_upsert_from_kommo(account=account, users=chunk))
        seen.extend(user.id for user in chunk)
        progress.advance("users", len(chunk))
    result.updated += mirror.mirror_mark_missing_deleted(
        model=KommoUser, account=account, seen_kommo_ids=seen
    )
    _finish(account, "users", result, progress)
    return result


def custom_fields_sync(
    *,
    account: KommoAccount,
    client: KommoClient,
    progress: Progress,
    follow: mirror.MirrorFollow,
) -> mirror.BatchResult:
    """Field definitions of leads, contacts, companies and of every catalog the mirror knows."""
    progress.start("custom_fields", None)
    result = mirror.BatchResult()
    seen: list[int] = []
    catalogs = Catalog.objects.filter(account=account, is_deleted=False).values_list("kommo_id", flat=True)
    entities = [("leads", "leads"), ("contacts", "contacts"), ("companies", "companies")]
    entities += [(f"catalogs/{catalog_id}", "catalogs") for catalog_id in catalogs]
    for path, entity_type in entities:
        fields = list(client.custom_fields_list(path))
        result.add(
            mirror.custom_fields_upsert_from_kommo(account=account, entity_type=entity_type, fields=fields)
        )
        seen.extend(field.id for field in fields)
        progress.advance("custom_fields", len(fields))
    result.updated += mirror.mirror_mark_missing_deleted(
        model=CustomField, account=account, seen_kommo_ids=seen
    )
    _finish(account, "custom_fields", result, progress)
    return result


def catalogs_sync(
    *,
    account: KommoAccount,
    client: KommoClient,
    progress: Progress,
    follow: mirror.MirrorFollow,
) -> mirror.BatchResult:
    """Catalogs, then every element of each (pages of 250)."""
    progress.start("catalogs", None)
    catalogs = list(client.catalogs_list())
    result = mirror.catalogs_upsert_from_kommo(account=account, catalogs=catalogs)
    result.updated += mirror.mirror_mark_missing_deleted(
        model=Catalog, account=account, seen_kommo_ids=[c.id for c in catalogs]
    )
    progress.advance("catalogs", len(catalogs))
    for catalog in catalogs:
        seen: list[int] = []
        for chunk in _chunks(client.catalog_elements_list(catalog.id), PAGE_SIZE):
            written = mirror.catalog_elements_upsert_from_kommo(
                account=account, elements=chunk, follow=follow
            )
            result.add(written)
            seen.extend(element.id for element in chunk)
            progress.advance("catalogs", len(chunk))
        result.updated += mirror.mirror_mark_missing_deleted(
            model=CatalogElement, account=account, seen_kommo_ids=seen, scope=Q(catalog_kommo_id=catalog.id)
        )
    _finish(account, "catalogs", result, progress)
    return result


_SMALL: dict[str, Callable[..., mirror.BatchResult]] = {
    "pipelines": pipelines_sync,
    "users": users_sync,
    "custom_fields": custom_fields_sync,
    "catalogs": catalogs_sync,
}


def _finish(account: KommoAccount, resource: str, result: mirror.BatchResult, progress: Progress) -> None:
    now = timezone.now()
    SyncState.objects.update_or_create(
        account=account,
        resource=resource,
        defaults={
            "finished_at": now,
            "last_full_at": now,
            "seen": result.seen,
            "started_at": None,
            "error": "",
        },
    )
    progress.finish(resource, result)


# -- paged resources ---------------------------------------------------------------------------------


def _paged_sync(
    *,
    account: KommoAccount,
    client: KommoClient,
    resource: str,
    full: bool,
    since: dt.datetime | None,
    progress: Progress,
    follow: mirror.MirrorFollow,
) -> mirror.BatchResult:
    state = _state(account, resource)
    unfinished = "full" in state.cursor
    if full or unfinished or (since is None and state.last_full_at is None):
        return _full_sync(
            account=account, client=client, resource=resource, state=state, progress=progress, follow=follow
        )
    start = since if since is not None else _from_ts(int(state.cursor.get("updated_at", 0))) - OVERLAP
    return _incremental_sync(
        account=account,
        client=client,
        resource=resource,
        state=state,
        start=start,
        progress=progress,
        follow=follow,
    )


def _page(client: KommoClient, spec: _Paged, page: int) -> tuple[list[Any], bool]:
    """One page of a list in id order, typed: the items and whether Kommo says there is a next page.

    The client lists whole collections; a resumable full run needs to start at a given page, so it asks
    for the page itself through :meth:`KommoClient.request` and parses the items at once."""
    params = [("order[id]", "asc"), ("page", str(page)), ("limit", str(PAGE_SIZE))]
    if spec.with_:
        params.append(("with", ",".join(spec.with_)))
    response = client.request("GET", spec.path, params=params)
    if response.status_code == 204 or not response.content:
        return [], False
    data = response.json()
    if not isinstance(data, dict):
        raise KommoPayloadError(f"GET {spec.path}: expected a HAL object")
    embedded = data.get("_embedded")
    raw = embedded.get(spec.key) if isinstance(embedded, dict) else None
    items = [spec.parse(item) for item in raw or [] if isinstance(item, dict)]
    links = data.get("_links")
    return items, isinstance(links, dict) and "next" in links


def _full_sync(
    *,
    account: KommoAccount,
    client: KommoClient,
    resource: str,
    state: SyncState,
    progress: Progress,
    follow: mirror.MirrorFollow,
) -> mirror.BatchResult:
    spec = _PAGED[resource]
    position = state.cursor.get("full")
    if position is None:
        position = {"page": 0, "last_id": 0, "started_at": int(time.time())}
        state.cursor = {**state.cursor, "full": position}
        state.started_at, state.seen, state.calls, state.error = timezone.now(), 0, 0, ""
        state.save()
    result = mirror.BatchResult()
    progress.start(resource, None)
    progress.advance(resource, state.seen)
    page = max(int(position["page"]), 1)  # a resumed run reads its last finished page again
    more = True
    while more:
        items, more = _page(client, spec, page)
        fresh = [item for item in items if item.id > int(position["last_id"])]
        with transaction.atomic():
            result.add(spec.upsert(account, fresh, follow))
            if items:
                position = {**position, "page": page, "last_id": max(item.id for item in items)}
            state.cursor = {**state.cursor, "full": position}
            state.seen += len(fresh)
            state.calls += 1
            state.save()
        progress.advance(resource, len(fresh))
        page += 1
    started_at = int(position["started_at"])
    state.cursor = {"updated_at": started_at, "ids": []}
    state.started_at = None
    state.finished_at = state.last_full_at = timezone.now()
    state.save()
    if resource == "leads":
        _events_cursor_start(account, started_at)
    progress.finish(resource, result)
    return result


def _incremental_sync(
    *,
    account: KommoAccount,
    client: KommoClient,
    resource: str,
    state: SyncState,
    start: dt.datetime,
    progress: Progress,
    follow: mirror.MirrorFollow,
) -> mirror.BatchResult:
    """Rows changed since ``start``, in ``updated_at`` order; each request asks from the last time seen,
    and the ids already written at that exact time are skipped."""
    spec = _PAGED[resource]
    state.started_at, state.seen, state.calls, state.error = timezone.now(), 0, 0, ""
    state.save()
    result = mirror.BatchResult()
    progress.start(resource, None)
    cursor_ts, done_ids = _ts(start) or 0, set[int]()
    while True:
        listing = spec.list_(client, {"updated_at": {"from": cursor_ts}}, {"updated_at": "asc"})
        items = list(itertools.islice(listing, PAGE_SIZE))
        crowded = len(items) == PAGE_SIZE and all(item.id in done_ids for item in items)
        if crowded:
            # More than a page changed within one second: read that second whole, then move past it.
            second = {"updated_at": {"from": cursor_ts, "to": cursor_ts}}
            items = list(spec.list_(client, second, {"id": "asc"}))
            next_ts, next_ids = cursor_ts + 1, set[int]()
        else:
            next_ts = max((_ts(item.updated_at) or 0 for item in items), default=cursor_ts)
            next_ids = {item.id for item in items if (_ts(item.updated_at) or 0) == next_ts}
            if next_ts == cursor_ts:
                next_ids |= done_ids
        fresh = [item for item in items if item.id not in done_ids]
        with transaction.atomic():
            result.add(spec.upsert(account, fresh, follow))
            state.cursor = {"updated_at": next_ts, "ids": sorted(next_ids)}
            state.seen += len(fresh)
            state.calls += 1
            state.save()
        progress.advance(resource, len(fresh))
        if len(items) < PAGE_SIZE and not crowded:
            break
        cursor_ts, done_ids = next_ts, next_ids
    state.started_at = None
    state.finished_at = timezone.now()
    state.save()
    progress.finish(resource, result)
    return result


# -- re-fetching named rows ------------------------------------------------------------------------------


def leads_refetch(
    *,
    account: KommoAccount,
    kommo_ids: Iterable[int],
    source: str = StageChange.Source.SYNC,
    client: KommoClient | None = None,
    moves_reported_for: Collection[int] = (),
    follow: mirror.MirrorFollow,
) -> mirror.BatchResult:
    """Fetch the named deals again (``filter[id][]``, 250 per call) and upsert them. Deals Kommo no longer
    lists are left alone: deletions come from the events API or a webhook. No stage move is inferred for
    the deals in ``moves_reported_for``: the caller records theirs."""
    client = client or KommoClient(account)
    result = mirror.BatchResult()
    for chunk in _chunks(sorted(set(kommo_ids)), IDS_PER_CALL):
        asked_at = timezone.now()
        leads = list(client.leads_list({"id": chunk}, LEAD_WITH))
        result.add(
            mirror.leads_upsert_from_kommo(
                account=account,
                leads=leads,
                source=source,
                moves_reported_for=moves_reported_for,
                fetched_at=asked_at,
                follow=follow,
            )
        )
    return result


def contacts_refetch(
    *,
    account: KommoAccount,
    kommo_ids: Iterable[int],
    client: KommoClient | None = None,
    follow: mirror.MirrorFollow,
) -> mirror.BatchResult:
    return _refetch(account=account, resource="contacts", kommo_ids=kommo_ids, client=client, follow=follow)


def companies_refetch(
    *,
    account: KommoAccount,
    kommo_ids: Iterable[int],
    client: KommoClient | None = None,
    follow: mirror.MirrorFollow,
) -> mirror.BatchResult:
    return _refetch(account=account, resource="companies", kommo_ids=kommo_ids, client=client, follow=follow)


def _refetch(
    *,
    account: KommoAccount,
    resource: str,
    kommo_ids: Iterable[int],
    client: KommoClient | None,
    follow: mirror.MirrorFollow,
) -> mirror.BatchResult:
    """Fetch the named rows of a paged resource again (``filter[id][]``, 250 per call) and upsert them."""
    spec = _PAGED[resource]
    client = client or KommoClient(account)
    result = mirror.BatchResult()
    for chunk in _chunks(sorted(set(kommo_ids)), IDS_PER_CALL):
        result.add(spec.upsert(account, list(spec.list_(client, {"id": chunk}, {})), follow))
    return result


# -- events reconciliation -----------------------------------------------------------------------------


def _events_cursor_start(account: KommoAccount, started_at: int) -> None:
    """A first full sync of deals starts the events reconciliation at its own start."""
    state = _state(account, "events")
    if "created_at" not in state.cursor:
        state.cursor = {"created_at": started_at, "ids": []}
        state.save()


def events_reconcile(
    *,
    account: KommoAccount,
    client: KommoClient | None = None,
    progress: Progress | None = None,
    follow: mirror.MirrorFollow,
    touches_follow: TouchesFollow,
) -> mirror.BatchResult:
    """Read deal events from the stored cursor and repair the mirror with them: every stage move becomes a
    :class:`StageChange` (source ``events``, who moved it, the event id; merged with what a webhook already
    recorded), every deal an event names is re-fetched (250 ids per call), deletions and restores applied.
    The cursor moves after each page of 100 events; then the e-mails are read from their notes. ``follow``:
    what follows each write, inside its page's transaction; ``touches_follow``: what follows the touches
    read (the events' notes, calls and meetings, then the e-mails), inside the same transactions."""
    client = client or KommoClient(account)
    progress = progress or _Silent()
    state = _state(account, "events")
    if "created_at" not in state.cursor:
        state.cursor = {"created_at": _ts(timezone.now() - EVENTS_LOOKBACK), "ids": []}
    state.started_at, state.seen, state.calls, state.error = timezone.now(), 0, 0, ""
    state.save()
    cursor_ts, done = int(state.cursor["created_at"]), set(state.cursor.get("ids", []))
    # Deals created since the run began, whose first stay is recorded once every event is read.
    added: dict[str, list[Any]] = dict(state.cursor.get("added", {}))
    filters = {
        "entity": "lead,contact,task",
        "type": ",".join((*LEAD_EVENT_TYPES, *TOUCH_EVENT_TYPES, TASK_COMPLETED)),
        "created_at": {"from": cursor_ts},
    }
    result = mirror.BatchResult()
    progress.start("events", None)
    for page in _chunks(client.events_list(filters), EVENTS_PAGE_SIZE):
        fresh = [event for event in page if event.id not in done]
        with transaction.atomic():
            result.add(_events_apply(account=account, client=client, events=fresh, follow=follow))
            touches = _events_touches(client=client, events=fresh)
            if touches:
                touches_follow(account, touches)
            for event in fresh:
                if event.type == "lead_added" and event.entity_id:
                    added.setdefault(str(event.entity_id), [event.id, event.created_by])
            last_ts = max((_ts(event.created_at) or cursor_ts for event in page), default=cursor_ts)
            ids = {event.id for event in page if (_ts(event.created_at) or cursor_ts) == last_ts}
            if last_ts == cursor_ts:
                ids |= done
            cursor_ts, done = last_ts, ids
            state.cursor = {"created_at": cursor_ts, "ids": sorted(done), "added": added}
            state.seen += len(fresh)
            state.calls += 1
            state.save()
        progress.advance("events", len(fresh))
    if added:
        with transaction.atomic():
            deals = Lead.objects.filter(account=account, kommo_id__in=[int(key) for key in added])
            creators = {int(key): (value[0], value[1]) for key, value in added.items()}
            result.new_stage_changes.extend(
                first_stays_record(account=account, leads=deals, events=creators, follow=follow)
            )
            state.cursor = {"created_at": cursor_ts, "ids": sorted(done)}
            state.save()
    state.started_at = None
    state.finished_at = timezone.now()
    state.save()
    # Last, once the events' run is finished: a failure to read the mail notes leaves it whole.
    _mail_touches_reconcile(account=account, client=client, touches_follow=touches_follow)
    progress.finish("events", result)
    return result


def _events_touches(*, client: KommoClient, events: Sequence[types.Event]) -> tuple[Touch, ...]:
    """The touches among the events: a note, call or SMS on a deal or a contact, at the event; a completed
    task that is a meeting on a deal or a contact, at its completion (the tasks are read back, 50 ids per
    call, for their type and entity)."""
    touches = [
        Touch(entity=event.entity_type, kommo_id=event.entity_id, at=event.created_at)
        for event in events
        if event.type in TOUCH_EVENT_TYPES
        and event.entity_type in ("lead", "contact")
        and event.entity_id
        and event.created_at is not None
    ]
    completed = {
        event.entity_id: event.created_at
        for event in events
        if event.type == TASK_COMPLETED and event.entity_id and event.created_at is not None
    }
    for chunk in _chunks(sorted(completed), 50):
        for task in client.tasks_list({"id": chunk}):
            entity = {"leads": "lead", "contacts": "contact"}.get(task.entity_type or "")
            if task.task_type_id == MEETING_TASK_TYPE and entity and task.entity_id and task.id in completed:
                touches.append(Touch(entity=entity, kommo_id=task.entity_id, at=completed[task.id]))
    return tuple(touches)


def _mail_touches_reconcile(
    *, account: KommoAccount, client: KommoClient, touches_follow: TouchesFollow
) -> int:
    """The e-mails on deals and contacts since the ``mail`` cursor, as touches dated at their note's
    creation (when Kommo recorded the e-mail), followed like the events' touches. Every note is read before
    anything is followed or the cursor moves: a call that fails leaves both as they were. The cursor keeps the
    latest ``updated_at`` read and the next run starts ``OVERLAP`` before it: a touch is the later of the
    moments, so reading a note twice changes nothing. Returns the number of e-mail notes read."""
    state = _state(account, "mail")
    since = int(state.cursor.get("updated_at") or _ts(timezone.now() - EVENTS_LOOKBACK) or 0)
    start = max(0, since - int(OVERLAP.total_seconds()))
    latest, touches, read = since, [], 0
    for entity, kind in MAIL_NOTE_ENTITIES:
        for note in client.notes_list(entity, {"note_type": MAIL_NOTE_TYPE, "updated_at": {"from": start}}):
            read += 1
            latest = max(latest, _ts(note.updated_at) or latest)
            if note.note_type == MAIL_NOTE_TYPE and note.entity_id and note.created_at is not None:
                touches.append(Touch(entity=kind, kommo_id=note.entity_id, at=note.created_at))
    with transaction.atomic():
        if touches:
            touches_follow(account, tuple(touches))
        state.cursor = {"updated_at": latest}
        state.seen, state.finished_at = read, timezone.now()
        state.save()
    return read


def _events_apply(
    *,
    account: KommoAccount,
    client: KommoClient,
    events: Sequence[types.Event],
    follow: mirror.MirrorFollow,
) -> mirror.BatchResult:
    lead_ids = {
        event.entity_id
        for event in events
        if event.entity_type == "lead" and event.entity_id and event.type in LEAD_EVENT_TYPES
    }
    # A new deal's re-fetch must not infer a move either: its first stay is derived at the end of the run.
    moved = {event.entity_id for event in events if event.type in STAGE_EVENT_TYPES and event.entity_id}
    # Stage moves come from the events themselves: the re-fetch must not infer them a second time.
    result = leads_refetch(
        account=account,
        kommo_ids=lead_ids,
        source=StageChange.Source.EVENTS,
        client=client,
        moves_reported_for=moved,
        follow=follow,
    )
    deals = {row.kommo_id: row for row in Lead.objects.filter(account=account, kommo_id__in=lead_ids)}
    last_deletion: dict[int, types.Event] = {}
    for event in events:
        deal = deals.get(event.entity_id or 0)
        if event.type in ("lead_deleted", "lead_restored") and event.entity_id:
            last_deletion[event.entity_id] = event
        if deal is None or event.created_at is None:
            continue
        after = event.lead_status_after
        if event.type != "lead_status_changed" or after is None:
            continue
        before = event.lead_status_before
        change, created = mirror.stage_change_record(
            account=account,
            lead=deal,
            from_status_id=before.status_id if before else None,
            from_pipeline_id=before.pipeline_id if before else None,
            to_status_id=after.status_id,
            to_pipeline_id=after.pipeline_id,
            at=event.created_at,
            source=StageChange.Source.EVENTS,
            moved_by_kommo_user_id=event.created_by or None,
            kommo_event_id=event.id,
            follow=follow,
        )
        if created:
            result.new_stage_changes.append(change)
    for lead_id, event in last_deletion.items():
        if event.type == "lead_deleted" and mirror.lead_mark_deleted(
            account=account, kommo_id=lead_id, at=event.created_at, follow=follow
        ):
            result.updated += 1
    return result


# -- first stays ---------------------------------------------------------------------------------------


def first_stays_record(
    *,
    account: KommoAccount,
    leads: Iterable[Lead],
    events: Mapping[int, tuple[str | None, int | None]] | None = None,
    follow: mirror.MirrorFollow | None,
) -> list[StageChange]:
    """Record each deal's entry into its first stage, as Kommo lets it be known: at the deal's
    ``created_at``, into the stage its earliest recorded move left (the ``value_before`` of its earliest
    ``lead_status_changed``), or into its current stage when it never moved. Kommo's ``lead_added``
    names a note, not a stage. ``events`` gives, per deal's Kommo id, the ``lead_added`` event id and its
    author when they are known (else the deal's ``created_by``). Deals that already have a first stay are
    left alone. Call it once every move since the deals' creation has been recorded. Returns the new
    rows. ``follow``: what follows each new row (the events sweep's: the gates); None: history, recorded
    together and followed by nothing (the backfill)."""
    events = events or {}
    new: list[StageChange] = []
    for chunk in _chunks((lead for lead in leads if lead.created_at is not None), 1000):
        pks = [lead.pk for lead in chunk]
        entered = set(
            StageChange.objects.filter(lead_id__in=pks, from_status_kommo_id__isnull=True).values_list(
                "lead_id", flat=True
            )
        )
        earliest: dict[int, tuple[int | None, int | None]] = {}
        moves = (
            StageChange.objects.filter(lead_id__in=pks, from_status_kommo_id__isnull=False)
            .order_by("lead_id", "at", "pk")
            .values_list("lead_id", "from_status_kommo_id", "from_pipeline_kommo_id")
        )
        for lead_id, status_id, pipeline_id in moves:
            earliest.setdefault(lead_id, (status_id, pipeline_id))
        past: list[mirror.PastMove] = []
        for lead in chunk:
            if lead.pk in entered or lead.created_at is None:
                continue
            status_id, pipeline_id = earliest.get(lead.pk, (lead.status_kommo_id, lead.pipeline_kommo_id))
            if status_id is None:
                continue
            event_id, author = events.get(lead.kommo_id, (None, None))
            created_by = author or _opt_user(lead.raw.get("created_by"))
            if follow is None:  # history: recorded together, below
                past.append(
                    mirror.PastMove(
                        lead=lead,
                        from_status_id=None,
                        from_pipeline_id=None,
                        to_status_id=status_id,
                        to_pipeline_id=pipeline_id,
                        at=lead.created_at,
                        moved_by_kommo_user_id=created_by,
                        kommo_event_id=event_id,
                    )
                )
                continue
            change, created = mirror.stage_change_record(
                account=account,
                lead=lead,
                from_status_id=None,
                to_status_id=status_id,
                to_pipeline_id=pipeline_id,
                at=lead.created_at,
                source=StageChange.Source.EVENTS,
                moved_by_kommo_user_id=created_by,
                kommo_event_id=event_id,
                follow=follow,
            )
            if created:
                new.append(change)
        new.extend(mirror.stage_changes_record_past(account=account, moves=past)[0])
    return new


def _opt_user(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


# -- history backfill ----------------------------------------------------------------------------------


@dataclass
class HistoryResult:
    """What a backfill did: the range it covered, the events it read, the moves it recorded for the first
    time, those already known (from a webhook, a sync or an earlier run), the events of deals the mirror
    does not hold (deleted in Kommo), and the first stays it derived."""

    start: dt.datetime
    end: dt.datetime
    resumed: bool = False
    events: int = 0
    recorded: int = 0
    known: int = 0
    skipped: int = 0
    first_stays: int = 0
    field_changes: int = 0

    @property
    def days(self) -> int:
        return max(0, round((self.end - self.start) / dt.timedelta(days=1)))

    def summary(self) -> str:
        return (
            f"{self.days} days, {self.events:,} events: {self.recorded:,} moves recorded, "
            f"{self.known:,} already known, {self.skipped:,} of deals not in the mirror, "
            f"{self.first_stays:,} first stages, "
            f"{self.field_changes:,} field changes of contacts and elements"
        )


def history_needed(account: KommoAccount) -> bool:
    """Whether the sync must backfill the account's history: it never finished one (and
    ``KOMMO_HISTORY_DAYS`` is not 0), or one was interrupted."""
    state = SyncState.objects.filter(account=account, resource="history").first()
    if state is not None and "backfill" in state.cursor:
        return True
    return settings.KOMMO_HISTORY_DAYS > 0 and (state is None or state.last_full_at is None)


def history_backfill(
    *,
    account: KommoAccount,
    days: int | None = None,
    client: KommoClient | None = None,
    progress: Progress | None = None,
    field_changes_follow: FieldChangesFollow,
) -> HistoryResult:
    """Read back ``days`` (default ``KOMMO_HISTORY_DAYS``) of deal moves from ``/api/v4/events`` and
    record each as a :class:`StageChange` (source ``events``, its event id, who moved it, the exact time),
    then the first stay of every deal created in that range. Nothing follows the moves: past moves are
    history, not moves for the gates to judge. The same pages bring the past changes of contacts' and
    catalog elements' fields, given page by page to ``field_changes_follow`` inside the page's transaction
    (the flows' dates the stakeholders' history with them); run it after the mirror holds the contacts and
    elements.

    The range ends when the backfill starts; it is read in windows of :data:`HISTORY_WINDOW`, 100 events
    per page. Its own cursor (``SyncState`` resource ``history``) keeps the range, the window and the last
    finished page, so an interrupted run continues there (``days`` is then ignored); it never touches the
    reconciliation's cursor. Event ids make a second run add nothing."""
    client = client or KommoClient(account)
    progress = progress or _Silent()
    state = _state(account, "history")
    position = state.cursor.get("backfill")
    resumed = position is not None
    if position is None:
        end = int(time.time())
        span = settings.KOMMO_HISTORY_DAYS if days is None else days
        start = end - int(dt.timedelta(days=max(0, span)).total_seconds())
        position = {"from": start, "to": end, "window": start, "page": 0}
        state.cursor = {**state.cursor, "backfill": position}
        state.started_at, state.seen, state.calls, state.error = timezone.now(), 0, 0, ""
        state.save()
    start, end = int(position["from"]), int(position["to"])
    result = HistoryResult(start=_from_ts(start), end=_from_ts(end), resumed=resumed)
    day = int(dt.timedelta(days=1).total_seconds())
    total = max(1, -(-(end - start) // day))
    window = int(position["window"])
    shown = min(total, (window - start) // day)
    progress.start("history", total)
    progress.advance("history", shown)
    while window <= end:
        window_end = min(window + int(HISTORY_WINDOW.total_seconds()) - 1, end)
        page = int(position["page"]) + 1
        more = True
        while more:
            events, more = _history_page(client, window, window_end, page)
            with transaction.atomic():
                _history_apply(
                    account=account, events=events, result=result, field_changes_follow=field_changes_follow
                )
                position = {**position, "page": page}
                state.cursor = {**state.cursor, "backfill": position}
                state.seen += len(events)
                state.calls += 1
                state.save()
            page += 1
        window = window_end + 1
        position = {**position, "window": window, "page": 0}
        state.cursor = {**state.cursor, "backfill": position}
        state.save()
        covered = total if window > end else min(total, (window - start) // day)
        progress.advance("history", covered - shown)
        shown = covered
    with transaction.atomic():
        created = Lead.objects.filter(account=account, created_at__range=(_from_ts(start), _from_ts(end)))
        result.first_stays = len(first_stays_record(account=account, leads=created, follow=None))
        state.cursor = {"from": start, "to": end}
        state.started_at = None
        state.finished_at = state.last_full_at = timezone.now()
        state.save()
    progress.finish("history", result)
    return result


def _history_page(client: KommoClient, start: int, end: int, page: int) -> tuple[list[types.Event], bool]:
    """One page of the deals' stage moves and the field changes created in ``[start, end]`` (a fixed listing:
    the range is past)."""
    filters = {"type": ",".join(HISTORY_EVENT_TYPES), "created_at": {"from": start, "to": end}}
    params = [*query_params(filters=filters), ("page", str(page)), ("limit", str(EVENTS_PAGE_SIZE))]
    response = client.request("GET", "/api/v4/events", params=params)
    if response.status_code == 204 or not response.content:
        return [], False
    data = response.json()
    if not isinstance(data, dict):
        raise KommoPayloadError("GET /api/v4/events: expected a HAL object")
    embedded = data.get("_embedded")
    raw = embedded.get("events") if isinstance(embedded, dict) else None
    events = [types.Event.from_api(item) for item in raw or [] if isinstance(item, dict)]
    links = data.get("_links")
    return events, bool(events) and isinstance(links, dict) and "next" in links


def _history_apply(
    *,
    account: KommoAccount,
    events: Sequence[types.Event],
    result: HistoryResult,
    field_changes_follow: FieldChangesFollow,
) -> None:
    changes = [
        change
        for change in (event.field_change() for event in events)
        if change is not None and (change.entity_type == "contact" or change.catalog_id is not None)
    ]
    # The deals' own field changes are not read (the mirror keeps only their last values).
    events = [e for e in events if e.type == "lead_status_changed" and e.entity_type == "lead"]
    result.events += len(events)
    if changes:
        result.field_changes += len(changes)
        field_changes_follow(account, changes)
    ids = {event.entity_id for event in events if event.entity_id}
    deals = {row.kommo_id: row for row in Lead.objects.filter(account=account, kommo_id__in=ids)}
    moves: list[mirror.PastMove] = []
    for event in events:
        deal = deals.get(event.entity_id or 0)
        after = event.lead_status_after
        if deal is None or after is None or event.created_at is None:
            result.skipped += 1
            continue
        before = event.lead_status_before
        moves.append(
            mirror.PastMove(
                lead=deal,
                from_status_id=before.status_id if before else None,
                from_pipeline_id=before.pipeline_id if before else None,
                to_status_id=after.status_id,
                to_pipeline_id=after.pipeline_id,
                at=event.created_at,
                moved_by_kommo_user_id=event.created_by or None,
                kommo_event_id=event.id,
            )
        )
    created, known = mirror.stage_changes_record_past(account=account, moves=moves)
    result.recorded += len(created)
    result.known += known
