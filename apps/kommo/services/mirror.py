"""Upserts into the local mirror from typed Kommo payloads, and the stage-change history.

Every writer of the mirror (the sync, webhook processing, the events reconciliation, the admin's resync)
goes through these functions, so the rules hold whoever calls:

* an OLDER ``updated_at`` never overwrites a newer one (stale payloads are counted and skipped);
* a page of 250 costs a handful of queries, not one per row (rows are locked, created and updated in
  bulk; lookups of stages, users and linked rows are one query each);
* embedded contacts / catalog elements of a lead replace its links when the payload carries them;
* a lead whose stored stage differs from the payload's gets a :class:`StageChange` with the caller's
  source; the NEW stage changes and the keys of the rows that really changed come back to the caller
  (:class:`BatchResult`). What follows them — the stakeholders derived, the new moves queued for the
  gates — is the caller's, given as the writers' required ``follow`` argument (called inside the writer's
  transaction with what changed; the data paths in ``apps.flows`` give theirs), or
  :func:`nothing_follows` when the caller takes the next steps itself or the writes are no news; the
  boundary announces nothing;
* a re-fetch by id records when its request left (``Lead.fetched_at``), so that a follow-up can tell
  whether the mirror's copy of a deal was read from Kommo after a move was reported.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.db import IntegrityError, connections, models, router, transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from apps.core.normalize import email_normalize, phone_normalize
from apps.kommo import types
from apps.kommo.models.account import KommoAccount
from apps.kommo.models.mirror import (
    LOST_STATUS_ID,
    WON_STATUS_ID,
    Catalog,
    CatalogElement,
    Company,
    Contact,
    ContactChannel,
    CustomField,
    CustomFieldEnum,
    KommoUser,
    Lead,
    LeadCatalogElement,
    LeadContact,
    MirrorModel,
    Pipeline,
    StageChange,
    StageStay,
    Status,
)
from apps.kommo.services.stays import leads_stays_refresh

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=MirrorModel)
C = TypeVar("C", bound=models.Model)
P = TypeVar("P")

# Two reports of the same move whose times are exact (webhook ``last_modified``, event ``created_at``,
# the portal's own move) are one move when they are this close.
STAGE_CHANGE_WINDOW = dt.timedelta(seconds=settings.KOMMO_STAGE_CHANGE_WINDOW_SECONDS)
# A move seen by comparing stages (a sync, a re-fetch) is only known to have happened before the lead's
# ``updated_at``; an exact report up to this long before it is the same move.
STAGE_CHANGE_INFERRED_LAG = dt.timedelta(hours=settings.KOMMO_STAGE_CHANGE_INFERRED_LAG_HOURS)
DEFAULT_PHONE_REGION: str | None = settings.KOMMO_DEFAULT_PHONE_REGION

Source = StageChange.Source


@dataclass(frozen=True)
class UpsertResult(Generic[M]):
    """One upserted row: whether it was created, whether anything changed, and the stage changes the
    upsert recorded that did not exist before (act on these only)."""

    obj: M
    created: bool
    changed: bool
    new_stage_changes: tuple[StageChange, ...] = ()


@dataclass
class BatchResult:
    """What a bulk upsert did. ``new_stage_changes`` are the moves recorded for the first time;
    ``lead_ids``, ``contact_ids``, ``catalog_element_ids`` the local keys of the deals, contacts and
    catalog elements whose rows really changed (what the stakeholders are derived from)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0
    new_stage_changes: list[StageChange] = field(default_factory=list)
    lead_ids: list[int] = field(default_factory=list)
    contact_ids: list[int] = field(default_factory=list)
    catalog_element_ids: list[int] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)

    @property
    def seen(self) -> int:
        return self.created + self.updated + self.unchanged + self.stale

    def add(self, other: BatchResult) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.stale += other.stale
        self.new_stage_changes.extend(other.new_stage_changes)
        self.lead_ids.extend(other.lead_ids)
        self.contact_ids.extend(other.contact_ids)
        self.catalog_element_ids.extend(other.catalog_element_ids)


# What follows a write of the mirror, called inside the writer's transaction with what it changed (the
# keys of the rows that changed, the moves recorded for the first time): given by the caller, a required
# argument of every writer whose writes the apps above the boundary follow (stakeholders, gates). The data
# paths (``apps.flows``) give theirs; a caller that follows up itself, or whose writes are no news, passes
# :func:`nothing_follows`.
MirrorFollow = Callable[[KommoAccount, BatchResult], None]


def nothing_follows(account: KommoAccount, result: BatchResult) -> None:
    """For writes that are no news (the backfill of past moves, the portal's own move back), or whose
    caller takes the next steps itself, one by one (webhook processing's flow)."""


def _follow(follow: MirrorFollow, account: KommoAccount, result: BatchResult) -> None:
    """What follows a write that changed rows or recorded a move (a write that changed nothing is no
    news)."""
    if result.lead_ids or result.contact_ids or result.catalog_element_ids or result.new_stage_changes:
        follow(account, result)


@dataclass
class _Applied(Generic[M, P]):
    """A row the batch wrote, with its payload and its values before (None when it was created)."""

    row: M
    data: P
    before: dict[str, Any] | None


# -- the generic bulk engine -------------------------------------------------------------------------


def _snapshot(row: models.Model, names: Iterable[str]) -> dict[str, Any]:
    return {name: getattr(row, name) for name in names}


def _newest_per_id(
    items: Iterable[P], kommo_id: Callable[[P], int], updated_at: Callable[[P], Any]
) -> list[P]:
    """One payload per id (the newest by ``updated_at``), in the order of first appearance."""
    chosen: dict[int, P] = {}
    for item in items:
        key = kommo_id(item)
        current = chosen.get(key)
        if current is None or _is_older(updated_at(current), updated_at(item)):
            chosen[key] = item
    return list(chosen.values())


def _is_older(stored: dt.datetime | None, incoming: dt.datetime | None) -> bool:
    """Whether ``stored`` is strictly older than ``incoming`` (unknown times never count as older)."""
    return stored is not None and incoming is not None and stored < incoming


def _upsert_rows(
    *,
    model: type[M],
    account: KommoAccount,
    items: Sequence[P],
    kommo_id: Callable[[P], int],
    values: Callable[[P], dict[str, Any]],
    updated_at: Callable[[P], dt.datetime | None] = lambda item: None,
    scope: Q | None = None,
) -> tuple[BatchResult, list[_Applied[M, P]]]:
    """Create or update one row per payload, under row locks, in a constant number of queries.

    ``values`` gives the row's columns from a payload. A payload older than the row (by ``updated_at``)
    is skipped; a soft-deleted row is brought back only by a payload newer than its deletion. Must run
    inside a transaction (the locks last until it ends).
    """
    result = BatchResult()
    applied: list[_Applied[M, P]] = []
    if not items:
        return result, applied
    payloads = _newest_per_id(items, kommo_id, updated_at)
    rows = model._default_manager.select_for_update().filter(
        account=account, kommo_id__in=[kommo_id(item) for item in payloads]
    )
    if scope is not None:
        rows = rows.filter(scope)
    existing = {row.kommo_id: row for row in rows.order_by("kommo_id")}
    to_create: list[M] = []
    to_update: list[M] = []
    changed_fields: set[str] = set()
    now = timezone.now()
    for item in payloads:
        wanted = values(item)
        row = existing.get(kommo_id(item))
        if row is None:
            if wanted.get("is_deleted"):
                wanted.setdefault("deleted_at", now)
            row = model(account=account, kommo_id=kommo_id(item), **wanted)
            to_create.append(row)
            applied.append(_Applied(row, item, None))
            continue
        incoming_at = updated_at(item)
        stored_at: dt.datetime | None = getattr(row, "updated_at", None)
        if _is_older(incoming_at, stored_at) or _undeletes_with_stale_payload(row, wanted, incoming_at):
            result.stale += 1
            continue
        if wanted.get("is_deleted") and not row.is_deleted:
            wanted["deleted_at"] = now
        elif not wanted.get("is_deleted", row.is_deleted):
            wanted["deleted_at"] = None
        different = {name for name, value in wanted.items() if getattr(row, name) != value}
        if not different:
            result.unchanged += 1
            continue
        before = _snapshot(row, wanted)
        for name in different:
            setattr(row, name, wanted[name])
        row.modified = now  # auto_now is save()'s: bulk_update writes the value the row holds
        changed_fields |= different
        to_update.append(row)
        applied.append(_Applied(row, item, before))
    if to_create:
        model._default_manager.bulk_create(to_create)
    if to_update:
        _rows_update(model, to_update, sorted(changed_fields | {"modified"}))
    result.created += len(to_create)
    result.updated += len(to_update)
    return result, applied


# Bind parameters per UPDATE … FROM (VALUES …): a page of 250 deals' 18 columns is 4,500.
_VALUES_PARAMS_MAX = 30_000


def _rows_update(model: type[M], rows: Sequence[M], names: Sequence[str]) -> None:
    """Write the columns ``names`` of ``rows`` as they hold them. On PostgreSQL one statement,
    ``UPDATE … SET column = v.column FROM (VALUES (pk, value, …), …) AS v WHERE pk = v.pk``: Django's
    ``bulk_update`` builds a CASE with a WHEN per row for every column, whose expressions took most of the
    time of a webhook batch's upsert of its deals. Elsewhere (SQLite) ``bulk_update``."""
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql":
        model._default_manager.bulk_update(rows, names)
        return
    meta = model._meta
    quote = connection.ops.quote_name
    fields: list[models.Field[Any, Any]] = []
    columns: list[str] = []
    for found in (meta.pk, *(meta.get_field(name) for name in names)):
        assert isinstance(found, models.Field) and found.column is not None
        fields.append(found)
        columns.append(quote(found.column))
    table, pk, listed = quote(meta.db_table), columns[0], ", ".join(columns)
    row_sql = "(" + ", ".join(f"%s::{field.cast_db_type(connection)}" for field in fields) + ")"
    assignments = ", ".join(f"{column} = v.{column}" for column in columns[1:])
    per_statement = max(1, _VALUES_PARAMS_MAX // len(fields))
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            values = ", ".join([row_sql] * len(chunk))
            params = [
                field.get_db_prep_save(getattr(row, field.attname), connection)
                for row in chunk
                for field in fields
            ]
            # Every name is the model's, quoted; every value a parameter.
            sql = f"UPDATE {table} SET {assignments} FROM (VALUES {values}) AS v({listed})"  # noqa: S608
            cursor.execute(f"{sql} WHERE {table}.{pk} = v.{pk}", params)


def _undeletes_with_stale_payload(
    row: MirrorModel, wanted: dict[str, Any], incoming: dt.datetime | None
) -> bool:
    """A payload fetched before the row was deleted must not bring it back."""
    if not row.is_deleted or wanted.get("is_deleted", True) or row.deleted_at is None or incoming is None:
        return False
    return incoming < row.deleted_at.replace(microsecond=0)


def _retrying_on_conflict(fn: Callable[[], P]) -> P:
    """Run ``fn`` in a transaction; if a concurrent writer inserted one of the rows first (unique
    violation), run it once more: the rows now exist and take the update path."""
    try:
        with transaction.atomic():
            return fn()
    except IntegrityError:
        with transaction.atomic():
            return fn()


def _pk_map(
    model: type[MirrorModel], account: KommoAccount, kommo_ids: Iterable[int | None]
) -> dict[int, int]:
    wanted = {kid for kid in kommo_ids if kid is not None}
    if not wanted:
        return {}
    rows = model._default_manager.filter(account=account, kommo_id__in=wanted).values_list("kommo_id", "pk")
    return dict(rows)


def _status_map(account: KommoAccount) -> dict[tuple[int, int], int]:
    """(pipeline kommo id, status kommo id) → Status pk for the whole account (a few hundred rows)."""
    rows = Status.objects.filter(account=account).values_list("pipeline__kommo_id", "kommo_id", "pk")
    return {(pipeline_id, status_id): pk for pipeline_id, status_id, pk in rows}


def _fill_references(
    *,
    model: type[models.Model],
    account_filter: Q,
    fk: str,
    kommo_field: str,
    target: type[MirrorModel],
    account: KommoAccount,
    kommo_ids: Iterable[int],
) -> None:
    """Point rows that name a just-upserted entity by Kommo id at its local row (one UPDATE)."""
    ids = list(set(kommo_ids))
    if not ids:
        return
    local = target._default_manager.filter(account=account, kommo_id=OuterRef(kommo_field)).values("pk")[:1]
    dangling = model._default_manager.filter(
        account_filter, **{f"{fk}__isnull": True, f"{kommo_field}__in": ids}
    )
    dangling.update(**{fk: Subquery(local)})


def _children_replace(
    model: type[C],
    *,
    parent: str,
    kommo_field: str,
    existing: Iterable[C],
    wanted: Iterable[tuple[models.Model, int, dict[str, Any]]],
) -> set[int]:
    """Make the child rows of some parents (a lead's links, a field's options) exactly ``wanted``: one
    ``(parent row, Kommo id, values)`` per child. ``existing`` are the parents' current children: those
    not wanted are deleted, the missing are created, those whose values differ are updated (in bulk).
    Returns the pks of the parents whose children changed."""
    parent_id = f"{parent}_id"
    current = {(getattr(child, parent_id), getattr(child, kommo_field)): child for child in existing}
    keep: set[int] = set()
    to_create: list[C] = []
    to_update: list[C] = []
    changed_fields: set[str] = set()
    for owner, kommo_id, values in wanted:
        child = current.get((owner.pk, kommo_id))
        if child is None:
            to_create.append(model(**{parent: owner, kommo_field: kommo_id}, **values))
            continue
        keep.add(child.pk)
        different = {name for name, value in values.items() if getattr(child, name) != value}
        if different:
            for name in different:
                setattr(child, name, values[name])
            changed_fields |= different
            to_update.append(child)
    gone = [child for child in current.values() if child.pk not in keep]
    if gone:
        model._default_manager.filter(pk__in=[child.pk for child in gone]).delete()
    model._default_manager.bulk_create(to_create)
    if to_update:
        model._default_manager.bulk_update(to_update, sorted(changed_fields))
    return {getattr(child, parent_id) for child in [*to_create, *to_update, *gone]}


# -- pipelines, statuses, users, custom fields --------------------------------------------------------


def _pipeline_values(data: types.Pipeline) -> dict[str, Any]:
    return {
        "name": data.name,
        "sort": data.sort,
        "is_main": data.is_main,
        "is_unsorted_on": data.is_unsorted_on,
        "is_archive": data.is_archive,
        "is_deleted": False,
        "raw": data.raw,
    }


def _status_values(data: types.Status, pipeline: Pipeline) -> dict[str, Any]:
    return {
        "pipeline": pipeline,
        "name": data.name,
        "sort": data.sort,
        "type": data.type,
        "color": data.color or "",
        "is_editable": data.is_editable,
        "is_won": data.id == WON_STATUS_ID,
        "is_lost": data.id == LOST_STATUS_ID,
        "is_deleted": False,
        "raw": data.raw,
    }


def pipelines_upsert_from_kommo(*, account: KommoAccount, pipelines: Sequence[types.Pipeline]) -> BatchResult:
    """Pipelines with their statuses. A status missing from its pipeline's payload is soft-deleted
    (Kommo always sends a pipeline's whole list of statuses)."""

    def run() -> BatchResult:
        result, _ = _upsert_rows(
            model=Pipeline, account=account, items=pipelines, kommo_id=lambda p: p.id, values=_pipeline_values
        )
        rows = Pipeline.objects.filter(account=account, kommo_id__in=[p.id for p in pipelines])
        by_id = {row.kommo_id: row for row in rows}
        for data in pipelines:
            result.add(_statuses_upsert(account, by_id[data.id], data.statuses))
        _fill_lead_stages(account)
        return result

    return _retrying_on_conflict(run)


def _statuses_upsert(
    account: KommoAccount, pipeline: Pipeline, statuses: Sequence[types.Status]
) -> BatchResult:
    def values(data: types.Status) -> dict[str, Any]:
        return _status_values(data, pipeline)

    result, _ = _upsert_rows(
        model=Status,
        account=account,
        items=statuses,
        kommo_id=lambda s: s.id,
        values=values,
        scope=Q(pipeline=pipeline),
    )
    gone = Status.objects.filter(pipeline=pipeline, is_deleted=False).exclude(
        kommo_id__in=[s.id for s in statuses]
    )
    result.updated += gone.update(is_deleted=True, deleted_at=timezone.now(), modified=timezone.now())
    return result


def _fill_lead_stages(account: KommoAccount) -> None:
    """Leads that named a pipeline or stage before the mirror knew it point at it now (two UPDATEs)."""
    status = Status.objects.filter(
        account=account,
        pipeline__kommo_id=OuterRef("pipeline_kommo_id"),
        kommo_id=OuterRef("status_kommo_id"),
    ).values("pk")[:1]
    pipeline = Pipeline.objects.filter(account=account, kommo_id=OuterRef("pipeline_kommo_id")).values("pk")[
        :1
    ]
    Lead.objects.filter(account=account, status__isnull=True).update(status=Subquery(status))
    Lead.objects.filter(account=account, pipeline__isnull=True).update(pipeline=Subquery(pipeline))
    # Stays in a stage the mirror did not know: derived again now that it may (stage links, how they left).
    unknown = StageStay.objects.filter(account=account, status__isnull=True).values_list("lead_id", flat=True)
    leads_stays_refresh(lead_ids=unknown.distinct())


def _user_values(data: types.KommoUser) -> dict[str, Any]:
    return {
        "name": data.name,
        "email": email_normalize(data.email) or data.email,
        "is_admin": data.is_admin,
        "is_active": data.is_active,
        "group_kommo_id": data.group_id,
        "role_kommo_id": data.role_id,
        "is_deleted": False,
        "raw": data.raw,
    }


def users_upsert_from_kommo(*, account: KommoAccount, users: Sequence[types.KommoUser]) -> BatchResult:
    def run() -> BatchResult:
        result, applied = _upsert_rows(
            model=KommoUser, account=account, items=users, kommo_id=lambda u: u.id, values=_user_values
        )
        created = [item.row.kommo_id for item in applied if item.before is None]
        for model in (Lead, Contact, Company):
            _fill_references(
                model=model,
                account_filter=Q(account=account),
                fk="responsible_user",
                kommo_field="responsible_user_kommo_id",
                target=KommoUser,
                account=account,
                kommo_ids=created,
            )
        _fill_references(
            model=StageChange,
            account_filter=Q(account=account),
            fk="moved_by",
            kommo_field="moved_by_kommo_user_id",
            target=KommoUser,
            account=account,
            kommo_ids=created,
        )
        return result

    return _retrying_on_conflict(run)


def _field_values(data: types.CustomField, entity_type: str) -> dict[str, Any]:
    return {
        "entity_type": entity_type,
        "catalog_kommo_id": data.catalog_id,
        "name": data.name,
        "code": data.code or "",
        "type": str(data.type),
        "sort": data.sort,
        "is_predefined": data.is_predefined,
        "is_api_only": data.is_api_only,
        "is_deleted": False,
        "raw": data.raw,
    }


def custom_fields_upsert_from_kommo(
    *, account: KommoAccount, entity_type: str, fields: Sequence[types.CustomField]
) -> BatchResult:
    """Field definitions of one entity type (``leads``, ``contacts``, ``companies``, ``catalogs``) with
    their options; an option missing from its field's payload is removed."""

    def run() -> BatchResult:
        result, applied = _upsert_rows(
            model=CustomField,
            account=account,
            items=fields,
            kommo_id=lambda f: f.id,
            values=lambda f: _field_values(f, entity_type),
        )
        rows = {
            row.kommo_id: row
            for row in CustomField.objects.filter(account=account, kommo_id__in=[f.id for f in fields])
        }
        options_changed = _children_replace(
            CustomFieldEnum,
            parent="field",
            kommo_field="kommo_id",
            existing=CustomFieldEnum.objects.filter(field__in=rows.values()),
            wanted=[
                (rows[data.id], enum.id, {"value": enum.value, "sort": enum.sort, "code": enum.code or ""})
                for data in fields
                for enum in data.enums
            ],
        )
        moved = len(options_changed - {item.row.pk for item in applied})
        result.unchanged -= moved
        result.updated += moved
        return result

    return _retrying_on_conflict(run)


# -- catalogs and elements ----------------------------------------------------------------------------


def _catalog_values(data: types.Catalog) -> dict[str, Any]:
    return {
        "name": data.name,
        "type": data.type,
        "sort": data.sort,
        "created_at": data.created_at,
        "updated_at": data.updated_at,
        "is_deleted": False,
        "raw": data.raw,
    }


def catalogs_upsert_from_kommo(*, account: KommoAccount, catalogs: Sequence[types.Catalog]) -> BatchResult:
    def run() -> BatchResult:
        result, applied = _upsert_rows(
            model=Catalog,
            account=account,
            items=catalogs,
            kommo_id=lambda c: c.id,
            values=_catalog_values,
            updated_at=lambda c: c.updated_at,
        )
        _fill_references(
            model=CatalogElement,
            account_filter=Q(account=account),
            fk="catalog",
            kommo_field="catalog_kommo_id",
            target=Catalog,
            account=account,
            kommo_ids=[item.row.kommo_id for item in applied if item.before is None],
        )
        return result

    return _retrying_on_conflict(run)


def _element_values(data: types.CatalogElement, catalogs: dict[int, int]) -> dict[str, Any]:
    return {
        "catalog_id": catalogs.get(data.catalog_id),
        "catalog_kommo_id": data.catalog_id,
        "name": data.name,
        "created_at": data.created_at,
        "updated_at": data.updated_at,
        "is_deleted": data.is_deleted,
        "raw": data.raw,
    }


def catalog_elements_upsert_from_kommo(
    *,
    account: KommoAccount,
    elements: Sequence[types.CatalogElement],
    follow: MirrorFollow,
) -> BatchResult:
    def run() -> BatchResult:
        catalogs = _pk_map(Catalog, account, {e.catalog_id for e in elements})
        result, applied = _upsert_rows(
            model=CatalogElement,
            account=account,
            items=elements,
            kommo_id=lambda e: e.id,
            values=lambda e: _element_values(e, catalogs),
            updated_at=lambda e: e.updated_at,
        )
        _fill_references(
            model=LeadCatalogElement,
            account_filter=Q(lead__account=account),
            fk="element",
            kommo_field="element_kommo_id",
            target=CatalogElement,
            account=account,
            kommo_ids=[item.row.kommo_id for item in applied if item.before is None],
        )
        result.catalog_element_ids = [item.row.pk for item in applied]
        _follow(follow, account, result)
        return result

    return _retrying_on_conflict(run)


# -- companies and contacts ---------------------------------------------------------------------------


def _company_values(data: types.Company, users: dict[int, int]) -> dict[str, Any]:
    return {
        "name": data.name,
        "responsible_user_id": users.get(data.responsible_user_id or 0),
        "responsible_user_kommo_id": data.responsible_user_id,
        "created_at": data.created_at,
        "updated_at": data.updated_at,
        "is_deleted": data.is_deleted,
        "raw": data.raw,
    }


def companies_upsert_from_kommo(*, account: KommoAccount, companies: Sequence[types.Company]) -> BatchResult:
    def run() -> BatchResult:
        users = _pk_map(KommoUser, account, {c.responsible_user_id for c in companies})
        result, applied = _upsert_rows(
            model=Company,
            account=account,
            items=companies,
            kommo_id=lambda c: c.id,
            values=lambda c: _company_values(c, users),
            updated_at=lambda c: c.updated_at,
        )
        created = [item.row.kommo_id for item in applied if item.before is None]
        for model in (Lead, Contact):
            _fill_references(
                model=model,
                account_filter=Q(account=account),
                fk="company",
                kommo_field="company_kommo_id",
                target=Company,
                account=account,
                kommo_ids=created,
            )
        return result

    return _retrying_on_conflict(run)


def contact_channels(data: types.Contact, *, default_region: str | None) -> tuple[list[str], list[str]]:
    """The contact's e-mails and phones as lookup keys: normalised, de-duplicated, in Kommo's order."""
    emails = [key for key in (email_normalize(value) for value in data.emails) if key]
    phones = [key for key in (phone_normalize(value, default_region) for value in data.phones) if key]
    return list(dict.fromkeys(emails)), list(dict.fromkeys(phones))


def _contact_values(data: types.Contact, users: dict[int, int], companies: dict[int, int]) -> dict[str, Any]:
    emails, phones = contact_channels(data, default_region=DEFAULT_PHONE_REGION)
    company_kommo_id = data.company_ids[0] if data.company_ids else None
    return {
        "name": data.name,
        "first_name": data.first_name,
        "last_name": data.last_name,
        "responsible_user_id": users.get(data.responsible_user_id or 0),
        "responsible_user_kommo_id": data.responsible_user_id,
        "company_id": companies.get(company_kommo_id or 0),
        "company_kommo_id": company_kommo_id,
        "emails": emails,
        "phones": phones,
        "created_at": data.created_at,
        "updated_at": data.updated_at,
        "is_deleted": data.is_deleted,
        "raw": data.raw,
    }


def contacts_upsert_from_kommo(
    *, account: KommoAccount, contacts: Sequence[types.Contact], follow: MirrorFollow
) -> BatchResult:
    def run() -> BatchResult:
        users = _pk_map(KommoUser, account, {c.responsible_user_id for c in contacts})
        companies = _pk_map(Company, account, {c.company_ids[0] for c in contacts if c.company_ids})
        result, applied = _upsert_rows(
            model=Contact,
            account=account,
            items=contacts,
            kommo_id=lambda c: c.id,
            values=lambda c: _contact_values(c, users, companies),
            updated_at=lambda c: c.updated_at,
        )
        _contact_channels_replace(account, [item for item in applied if _channels_changed(item)])
        _fill_references(
            model=LeadContact,
            account_filter=Q(lead__account=account),
            fk="contact",
            kommo_field="contact_kommo_id",
            target=Contact,
            account=account,
            kommo_ids=[item.row.kommo_id for item in applied if item.before is None],
        )
        result.contact_ids = [item.row.pk for item in applied]
        _follow(follow, account, result)
        return result

    return _retrying_on_conflict(run)


def _channels_changed(item: _Applied[Contact, types.Contact]) -> bool:
    before = item.before
    return before is None or (before["emails"], before["phones"]) != (item.row.emails, item.row.phones)


def _contact_channels_replace(account: KommoAccount, applied: list[_Applied[Contact, types.Contact]]) -> None:
    if not applied:
        return
    ContactChannel.objects.filter(
        contact__in=[item.row for item in applied if item.before is not None]
    ).delete()
    ContactChannel.objects.bulk_create(
        [
            ContactChannel(account=account, contact=item.row, kind=kind, value=value)
            for item in applied
            for kind, values in (
                (ContactChannel.Kind.EMAIL, item.row.emails),
                (ContactChannel.Kind.PHONE, item.row.phones),
            )
            for value in values
        ]
    )


def contact_upsert_from_kommo(
    *, account: KommoAccount, data: types.Contact, follow: MirrorFollow
) -> UpsertResult[Contact]:
    result = contacts_upsert_from_kommo(account=account, contacts=[data], follow=follow)
    return _single(Contact, account, data.id, result)


# -- leads ----------------------------------------------------------------------------------------------


def _lead_values(
    data: types.Lead,
    statuses: dict[tuple[int, int], int],
    pipelines: dict[int, int],
    users: dict[int, int],
    companies: dict[int, int],
) -> dict[str, Any]:
    company_kommo_id = data.company_ids[0] if data.company_ids else None
    return {
        "name": data.name,
        "price": data.price,
        "pipeline_id": pipelines.get(data.pipeline_id),
        "pipeline_kommo_id": data.pipeline_id,
        "status_id": statuses.get((data.pipeline_id, data.status_id)),
        "status_kommo_id": data.status_id,
        "responsible_user_id": users.get(data.responsible_user_id or 0),
        "responsible_user_kommo_id": data.responsible_user_id,
        "company_id": companies.get(company_kommo_id or 0),
        "company_kommo_id": company_kommo_id,
        "loss_reason_kommo_id": data.loss_reason_id,
        "created_at": data.created_at,
        "updated_at": data.updated_at,
        "closed_at": data.closed_at,
        "is_deleted": data.is_deleted,
        "raw": data.raw,
    }


def _embeds(data: types.Lead, key: str) -> bool:
    """Whether the payload was fetched with ``with=<key>`` (an empty list then means "none linked")."""
    embedded = data.raw.get("_embedded")
    return isinstance(embedded, dict) and key in embedded


def leads_upsert_from_kommo(
    *,
    account: KommoAccount,
    leads: Sequence[types.Lead],
    source: str = Source.SYNC,
    moves_reported_for: Collection[int] = (),
    fetched_at: dt.datetime | None = None,
    follow: MirrorFollow,
) -> BatchResult:
    """Upsert a page of leads (up to 250) in a constant number of queries, plus a few per lead whose stage
    moved: each such lead gets a :class:`StageChange` (``source`` says who noticed). The result's
    ``new_stage_changes`` lists the moves recorded for the first time. ``moves_reported_for``: Kommo ids of
    leads whose exact moves the caller records itself (the events reconciliation); none is inferred for
    them.

    ``fetched_at``: when the caller's request for these leads left (before the call, not after the answer).
    Every listed lead's ``Lead.fetched_at`` moves forward to it — also when the payload changed nothing or
    was older than the row (the row then holds a later read) — so the row says how recent a copy of Kommo
    it is at least. None (a listing whose request time is not known) leaves ``fetched_at`` alone.

    ``follow``: what follows the page's changes (the deals that changed and the moves inferred), inside
    its transaction."""

    def run() -> BatchResult:
        statuses = _status_map(account)
        pipelines = _pk_map(Pipeline, account, {lead.pipeline_id for lead in leads})
        users = _pk_map(KommoUser, account, {lead.responsible_user_id for lead in leads})
        companies = _pk_map(Company, account, {lead.company_ids[0] for lead in leads if lead.company_ids})
        result, applied = _upsert_rows(
            model=Lead,
            account=account,
            items=leads,
            kommo_id=lambda lead: lead.id,
            values=lambda lead: _lead_values(lead, statuses, pipelines, users, companies),
            updated_at=lambda lead: lead.updated_at,
        )
        _lead_contacts_replace(account, [item for item in applied if _embeds(item.data, "contacts")])
        _lead_elements_replace(account, [item for item in applied if _embeds(item.data, "catalog_elements")])
        if fetched_at is not None:
            _leads_fetched(account, [lead.id for lead in leads], fetched_at)
        for item in applied:
            before = item.before
            if before is None or item.data.id in moves_reported_for:
                continue
            moved = (before["status_kommo_id"], before["pipeline_kommo_id"]) != (
                item.data.status_id,
                item.data.pipeline_id,
            )
            if not moved or _history_explains(item.row, item.data, before.get("updated_at")):
                continue
            change, created = stage_change_record(
                account=account,
                lead=item.row,
                from_status_id=before["status_kommo_id"],
                to_status_id=item.data.status_id,
                from_pipeline_id=before["pipeline_kommo_id"],
                to_pipeline_id=item.data.pipeline_id,
                at=item.data.updated_at or timezone.now(),
                source=source,
                at_is_exact=False,
                not_before=before.get("updated_at"),
                follow=nothing_follows,  # followed with the page, below
            )
            if created:
                result.new_stage_changes.append(change)
        leads_stays_refresh(lead_ids=[item.row.pk for item in applied if _restaged(item)])
        result.lead_ids = [item.row.pk for item in applied]
        _follow(follow, account, result)
        return result

    return _retrying_on_conflict(run)


def _restaged(item: _Applied[Lead, types.Lead]) -> bool:
    """Whether what a deal's stays are derived from, besides its moves, may have changed: a new deal, or
    a different stage or creation time."""
    before = item.before
    return before is None or any(
        before.get(name) != getattr(item.row, name)
        for name in ("status_kommo_id", "pipeline_kommo_id", "created_at")
    )


def _leads_fetched(account: KommoAccount, kommo_ids: Sequence[int], fetched_at: dt.datetime) -> None:
    """Move ``fetched_at`` forward (never back) on the listed leads: one UPDATE."""
    Lead.objects.filter(account=account, kommo_id__in=set(kommo_ids)).filter(
        Q(fetched_at__isnull=True) | Q(fetched_at__lt=fetched_at)
    ).update(fetched_at=fetched_at)


def _history_explains(lead: Lead, data: types.Lead, stored_at: dt.datetime | None) -> bool:
    """Whether the recorded moves already bring the lead to its new stage: the webhook reported A→B and
    B→C before the re-fetch saw C, so there is no A→C move to infer."""
    latest = StageChange.objects.filter(lead=lead).order_by("-at", "-pk").first()
    return (
        latest is not None
        and (latest.to_status_kommo_id, latest.to_pipeline_kommo_id) == (data.status_id, data.pipeline_id)
        and (stored_at is None or latest.at >= stored_at)
    )


def lead_upsert_from_kommo(
    *, account: KommoAccount, data: types.Lead, source: str = Source.SYNC, follow: MirrorFollow
) -> UpsertResult[Lead]:
    result = leads_upsert_from_kommo(account=account, leads=[data], source=source, follow=follow)
    return _single(Lead, account, data.id, result)


def _lead_contacts_replace(account: KommoAccount, applied: list[_Applied[Lead, types.Lead]]) -> None:
    """Make each lead's contact links exactly those of its payload (``is_main`` included)."""
    if not applied:
        return
    contacts = _pk_map(Contact, account, {ref.id for item in applied for ref in item.data.contacts})
    _children_replace(
        LeadContact,
        parent="lead",
        kommo_field="contact_kommo_id",
        existing=LeadContact.objects.filter(
            lead__in=[item.row for item in applied if item.before is not None]
        ),
        wanted=[
            (item.row, ref.id, {"contact_id": contacts.get(ref.id), "is_main": ref.is_main})
            for item in applied
            for ref in item.data.contacts
        ],
    )


def _lead_elements_replace(account: KommoAccount, applied: list[_Applied[Lead, types.Lead]]) -> None:
    """Make each lead's catalog element links exactly those of its payload (with quantities)."""
    if not applied:
        return
    elements = _pk_map(
        CatalogElement, account, {ref.id for item in applied for ref in item.data.catalog_elements}
    )
    _children_replace(
        LeadCatalogElement,
        parent="lead",
        kommo_field="element_kommo_id",
        existing=LeadCatalogElement.objects.filter(
            lead__in=[item.row for item in applied if item.before is not None]
        ),
        wanted=[
            (
                item.row,
                ref.id,
                {
                    "element_id": elements.get(ref.id),
                    "catalog_kommo_id": ref.catalog_id,
                    "quantity": ref.quantity,
                },
            )
            for item in applied
            for ref in item.data.catalog_elements
        ],
    )


# -- deletions ------------------------------------------------------------------------------------------


def _mark_deleted(
    model: type[MirrorModel], account: KommoAccount, kommo_id: int, at: dt.datetime | None
) -> bool:
    updated: int = model._default_manager.filter(account=account, kommo_id=kommo_id, is_deleted=False).update(
        is_deleted=True, deleted_at=at or timezone.now(), modified=timezone.now()
    )
    return updated > 0


def lead_mark_deleted(
    *,
    account: KommoAccount,
    kommo_id: int,
    at: dt.datetime | None = None,
    follow: MirrorFollow,
) -> bool:
    """Soft-delete a deal (Kommo keeps deleted leads restorable). Returns whether it was live before; a
    deal the mirror never saw is not created. A restore arrives as a newer payload through the upsert."""
    deleted = _mark_deleted(Lead, account, kommo_id, at)
    if deleted:
        _follow(follow, account, BatchResult(updated=1, lead_ids=mirror_pks(Lead, account, kommo_id)))
    return deleted


def contact_mark_deleted(
    *,
    account: KommoAccount,
    kommo_id: int,
    at: dt.datetime | None = None,
    follow: MirrorFollow,
) -> bool:
    deleted = _mark_deleted(Contact, account, kommo_id, at)
    if deleted:
        _follow(follow, account, BatchResult(updated=1, contact_ids=mirror_pks(Contact, account, kommo_id)))
    return deleted


def company_mark_deleted(*, account: KommoAccount, kommo_id: int, at: dt.datetime | None = None) -> bool:
    return _mark_deleted(Company, account, kommo_id, at)


def catalog_element_mark_deleted(
    *,
    account: KommoAccount,
    kommo_id: int,
    at: dt.datetime | None = None,
    follow: MirrorFollow,
) -> bool:
    deleted = _mark_deleted(CatalogElement, account, kommo_id, at)
    if deleted:
        keys = mirror_pks(CatalogElement, account, kommo_id)
        _follow(follow, account, BatchResult(updated=1, catalog_element_ids=keys))
    return deleted


def mirror_mark_missing_deleted(
    *, model: type[MirrorModel], account: KommoAccount, seen_kommo_ids: Iterable[int], scope: Q | None = None
) -> int:
    """After a complete listing of a small resource (pipelines, users, custom fields, catalogs), soft-delete
    the rows Kommo no longer lists. Returns how many were deleted."""
    rows = model._default_manager.filter(account=account, is_deleted=False)
    if scope is not None:
        rows = rows.filter(scope)
    deleted: int = rows.exclude(kommo_id__in=list(seen_kommo_ids)).update(
        is_deleted=True, deleted_at=timezone.now(), modified=timezone.now()
    )
    return deleted


# -- stage history --------------------------------------------------------------------------------------


def stage_change_record(
    *,
    account: KommoAccount,
    lead: Lead,
    from_status_id: int | None,
    to_status_id: int,
    at: dt.datetime,
    source: str,
    moved_by_kommo_user_id: int | None = None,
    kommo_event_id: str | None = None,
    from_pipeline_id: int | None = None,
    to_pipeline_id: int | None = None,
    at_is_exact: bool = True,
    not_before: dt.datetime | None = None,
    latest_as_of: dt.datetime | None = None,
    follow: MirrorFollow,
) -> tuple[StageChange, bool]:
    """Record that ``lead`` moved from one stage to another; idempotent across sources.

    The same move reported again — by the webhook (``last_modified``), the events API (``created_at``,
    who moved it, the event id), a sync or re-fetch that sees the stage differ, or the portal's own move —
    is ONE row: a report matches a row of the same lead with the same from and to stages when both times
    are exact and within :data:`STAGE_CHANGE_WINDOW`, or when one of them is inferred (``at_is_exact``
    False: the lead's ``updated_at``, an upper bound of the move's time) and the exact one is up to
    :data:`STAGE_CHANGE_INFERRED_LAG` earlier. A match is enriched (mover, event id, the exact time).
    An inferred report may give ``not_before`` (when the lead was last seen at the from-stage): the move
    happened after it, so no earlier row can be it. An exact report may give ``latest_as_of``: a read of
    the deal from Kommo that left at this time found it at the move's to-stage, with no later report of it
    to come (the last of a webhook batch's moves of the deal) — the move came after every move recorded
    before then, so a row that another recorded move followed is not it, even within the same second
    (X→Y, moved back to X, X→Y again: Kommo's whole seconds cannot tell the two X→Y apart). Reports of one
    lead are serialised by a lock on its row. Returns the row and whether it is new.

    ``follow``: what follows a new row (inside the transaction; the sync's and the events sweep's queue
    it for the gates); :func:`nothing_follows` records history without telling anyone — the backfill of
    past moves (the gates must not judge a move of last spring), the portal's own move back, or webhook
    processing, whose flow gives its new moves to the gates itself (``apps.flows.webhooks``).
    Several reports at once: :func:`stage_changes_record`, which this is for one.
    """
    report = MoveReport(
        lead=lead,
        from_status_id=from_status_id,
        to_status_id=to_status_id,
        at=at,
        from_pipeline_id=from_pipeline_id,
        to_pipeline_id=to_pipeline_id,
        moved_by_kommo_user_id=moved_by_kommo_user_id,
        kommo_event_id=kommo_event_id,
        at_is_exact=at_is_exact,
        not_before=not_before,
        latest_as_of=latest_as_of,
    )
    return stage_changes_record(account=account, reports=[report], source=source, follow=follow)[0]


def _leads_lock(lead_ids: Iterable[int]) -> list[int]:
    """Lock the rows of these deals until the transaction ends, in id order as every writer of moves
    takes them (so two batches sharing deals wait for each other instead of deadlocking). Returns the
    ids, sorted and without repeats."""
    ids = sorted(set(lead_ids))
    list(Lead.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk", flat=True))
    return ids


@dataclass(frozen=True)
class MoveReport:
    """One report of a move, for :func:`stage_changes_record` (the arguments of
    :func:`stage_change_record`, which describes them)."""

    lead: Lead
    from_status_id: int | None
    to_status_id: int
    at: dt.datetime
    from_pipeline_id: int | None = None
    to_pipeline_id: int | None = None
    moved_by_kommo_user_id: int | None = None
    kommo_event_id: str | None = None
    at_is_exact: bool = True
    not_before: dt.datetime | None = None
    latest_as_of: dt.datetime | None = None

    @property
    def earliest_match(self) -> dt.datetime:
        """No row recorded before this time can be this move, nor bear on which row it is."""
        if self.at_is_exact:
            return self.at - STAGE_CHANGE_WINDOW
        earliest = self.at - STAGE_CHANGE_INFERRED_LAG
        if self.not_before is not None:
            earliest = max(earliest, self.not_before)
        return min(earliest, self.at - STAGE_CHANGE_WINDOW)


def stage_changes_record(
    *, account: KommoAccount, reports: Sequence[MoveReport], source: str, follow: MirrorFollow
) -> list[tuple[StageChange, bool]]:
    """Record several reported moves, in order, as :func:`stage_change_record` would one after the other
    (the same rows, matches and stays), at a cost that grows by one INSERT or UPDATE per move: one
    transaction; the deals' rows locked together (in id order, as every writer takes them); their recent
    moves, the stages and the movers read once; the stays of the deals derived again once. Each report is
    matched against the rows recorded before it, those of this call included. Returns (row, new) per
    report; ``follow`` is called once with every new row."""
    if not reports:
        return []
    with transaction.atomic():
        lead_ids = _leads_lock(report.lead.pk for report in reports)
        since = min(report.earliest_match for report in reports)
        history: dict[int, list[StageChange]] = {lead_id: [] for lead_id in lead_ids}
        for known in StageChange.objects.filter(lead_id__in=lead_ids, at__gte=since).order_by("at", "pk"):
            history[known.lead_id].append(known)
        event_ids = [report.kommo_event_id for report in reports if report.kommo_event_id is not None]
        by_event: dict[str, StageChange] = {}
        if event_ids:
            same_event = StageChange.objects.filter(lead__account_id=account.pk, kommo_event_id__in=event_ids)
            for known in same_event.order_by("lead", "at", "id"):
                by_event.setdefault(known.kommo_event_id or "", known)
        users = _pk_map(KommoUser, account, [report.moved_by_kommo_user_id for report in reports])
        statuses: dict[tuple[int, int], int] | None = None
        outcome: list[tuple[StageChange, bool]] = []
        created: list[StageChange] = []
        restayed: set[int] = set()
        for report in reports:
            lead = report.lead
            row: StageChange | None = None
            if report.kommo_event_id is not None:
                row = by_event.get(report.kommo_event_id)
            if row is None:
                row = _stage_change_match(report, history[lead.pk])
            if row is None:
                if statuses is None:
                    statuses = _status_map(account)
                row = _stage_change_new(
                    account,
                    report,
                    at_is_exact=report.at_is_exact,
                    source=source,
                    statuses=statuses,
                    users=users,
                )
                row.save(force_insert=True)
                history[lead.pk].append(row)
                if report.kommo_event_id is not None:
                    by_event.setdefault(report.kommo_event_id, row)
                created.append(row)
                restayed.add(lead.pk)
                outcome.append((row, True))
                continue
            changed: set[str] = set()
            if report.at_is_exact and not row.at_is_exact:
                row.at, row.at_is_exact = report.at, True
                changed |= {"at", "at_is_exact"}
                if row.source == Source.SYNC and source != Source.SYNC:
                    row.source = source
                    changed.add("source")
            if report.moved_by_kommo_user_id is not None and row.moved_by_kommo_user_id is None:
                row.moved_by_kommo_user_id = report.moved_by_kommo_user_id
                row.moved_by_id = users.get(report.moved_by_kommo_user_id)
                changed |= {"moved_by_kommo_user_id", "moved_by"}
            if report.kommo_event_id is not None and row.kommo_event_id is None:
                row.kommo_event_id = report.kommo_event_id
                by_event.setdefault(report.kommo_event_id, row)
                changed.add("kommo_event_id")
            if source not in row.sources:
                row.sources = [*row.sources, source]
                changed.add("sources")
            if changed:
                row.save(update_fields=sorted(changed))
                if "at" in changed:
                    restayed.add(lead.pk)
            outcome.append((row, False))
        leads_stays_refresh(lead_ids=restayed)
        _follow(follow, account, BatchResult(created=len(created), new_stage_changes=created))
    return outcome


@dataclass(frozen=True)
class PastMove:
    """A move read from Kommo's history (the events log), for :func:`stage_changes_record_past`.
    ``from_status_id`` None: the deal's entry into its first stage."""

    lead: Lead
    from_status_id: int | None
    from_pipeline_id: int | None
    to_status_id: int
    to_pipeline_id: int | None
    at: dt.datetime
    moved_by_kommo_user_id: int | None = None
    kommo_event_id: str | None = None


def stage_changes_record_past(
    *, account: KommoAccount, moves: Sequence[PastMove], source: str = Source.EVENTS
) -> tuple[list[StageChange], int]:
    """Record many past moves at once, as :func:`stage_change_record` would one by one with
    ``follow=nothing_follows`` (exact times, nothing following them), at a cost that does not grow per
    move: the history backfill's thousand moves would otherwise cost a thousand locks, matches and stay
    refreshes.

    Under the deals' row locks (in id order, as every writer takes them): a move whose event id is already
    recorded is known; a first stay of a deal that has one is known; a move of a deal that has a row no
    event reported (a webhook's, a sync's or the gate's, which this move might be) goes through
    :func:`stage_change_record` to be matched; every other move is new and inserted in one statement. The
    stays of the deals touched are derived again once. Returns the new rows and how many were known."""
    if not moves:
        return [], 0
    with transaction.atomic():
        lead_ids = _leads_lock(move.lead.pk for move in moves)
        event_ids = [move.kommo_event_id for move in moves if move.kommo_event_id]
        recorded = set(
            StageChange.objects.filter(account=account, kommo_event_id__in=event_ids).values_list(
                "kommo_event_id", flat=True
            )
        )
        rows = StageChange.objects.filter(lead_id__in=lead_ids)
        entered = set(rows.filter(from_status_kommo_id__isnull=True).values_list("lead_id", flat=True))
        unmatched = set(
            rows.filter(kommo_event_id__isnull=True, from_status_kommo_id__isnull=False).values_list(
                "lead_id", flat=True
            )
        )
        statuses = _status_map(account)
        users = _pk_map(KommoUser, account, [move.moved_by_kommo_user_id for move in moves])
        fresh: list[StageChange] = []
        careful: list[PastMove] = []
        known = 0
        for move in moves:
            if move.kommo_event_id in recorded or (move.from_status_id is None and move.lead.pk in entered):
                known += 1
                continue
            if move.from_status_id is None:
                entered.add(move.lead.pk)
            elif move.lead.pk in unmatched:
                careful.append(move)
                continue
            fresh.append(
                _stage_change_new(
                    account, move, at_is_exact=True, source=source, statuses=statuses, users=users
                )
            )
        created = StageChange.objects.bulk_create(fresh)
        leads_stays_refresh(lead_ids={row.lead_id for row in created})
        for move in careful:
            row, new = stage_change_record(
                account=account,
                lead=move.lead,
                from_status_id=move.from_status_id,
                from_pipeline_id=move.from_pipeline_id,
                to_status_id=move.to_status_id,
                to_pipeline_id=move.to_pipeline_id,
                at=move.at,
                source=source,
                moved_by_kommo_user_id=move.moved_by_kommo_user_id,
                kommo_event_id=move.kommo_event_id,
                follow=nothing_follows,
            )
            if new:
                created.append(row)
            else:
                known += 1
    return created, known


def _stage_change_new(
    account: KommoAccount,
    move: MoveReport | PastMove,
    *,
    at_is_exact: bool,
    source: str,
    statuses: Mapping[tuple[int, int], int],
    users: Mapping[int, int],
) -> StageChange:
    """The unsaved row of a new move: the stages and the mover linked through the maps read for the batch
    (``_status_map``, ``_pk_map``), a pipeline not reported taken as the deal's."""
    from_pipeline = move.from_pipeline_id or move.lead.pipeline_kommo_id
    to_pipeline = move.to_pipeline_id or move.lead.pipeline_kommo_id
    return StageChange(
        account=account,
        lead=move.lead,
        from_status_kommo_id=move.from_status_id,
        from_pipeline_kommo_id=from_pipeline if move.from_status_id is not None else None,
        to_status_kommo_id=move.to_status_id,
        to_pipeline_kommo_id=to_pipeline,
        from_status_id=statuses.get((from_pipeline, move.from_status_id or 0)),
        to_status_id=statuses.get((to_pipeline, move.to_status_id)),
        at=move.at,
        at_is_exact=at_is_exact,
        source=source,
        sources=[source],
        moved_by_id=users.get(move.moved_by_kommo_user_id or 0),
        moved_by_kommo_user_id=move.moved_by_kommo_user_id,
        kommo_event_id=move.kommo_event_id,
    )


def _stage_change_match(report: MoveReport, rows: Sequence[StageChange]) -> StageChange | None:
    """The recorded row ``report`` is a report of, among ``rows``: the lead's moves from
    ``report.earliest_match`` on, in the order they were recorded within a time (``at``, then pk)."""
    from_status_id, to_status_id, at = report.from_status_id, report.to_status_id, report.at
    window, lag = STAGE_CHANGE_WINDOW, STAGE_CHANGE_INFERRED_LAG

    def near(row: StageChange) -> bool:
        if report.at_is_exact:
            if row.at_is_exact:
                return at - window <= row.at <= at + window
            return at - window <= row.at <= at + lag
        earliest = at - lag if report.not_before is None else max(at - lag, report.not_before)
        return earliest <= row.at <= at + window

    same = (from_status_id, to_status_id)
    candidates = [
        row for row in rows if (row.from_status_kommo_id, row.to_status_kommo_id) == same and near(row)
    ]
    if report.kommo_event_id is not None:
        candidates = [row for row in candidates if row.kommo_event_id is None]
    if not candidates:
        return None
    earliest = min(min(row.at for row in candidates), at)
    latest = max(max(row.at for row in candidates), at)
    others = [
        row
        for row in rows
        if earliest <= row.at <= latest and (row.from_status_kommo_id, row.to_status_kommo_id) != same
    ]
    candidates = [row for row in candidates if not _moved_between(row, at, others)]
    not_before = report.not_before
    if not_before is not None:
        # An inferred report saw the lead in the from-stage as of ``not_before``: its move came after the
        # lead last entered that stage, even within the same second (X→Y, moved back to X, X→Y again).
        entered = [row for row in others if row.to_status_kommo_id == from_status_id and row.at <= not_before]
        candidates = [
            row for row in candidates if not any((back.at, back.pk) > (row.at, row.pk) for back in entered)
        ]
    latest_as_of = report.latest_as_of
    if latest_as_of is not None and candidates:
        # The deal was seen at the to-stage after every move recorded by then: a row one of those moves
        # followed was left, so the report is a later move (ordered within a second by primary key).
        first = min(row.at for row in candidates)
        followed = [
            other
            for other in rows
            if other.created <= latest_as_of
            and other.at >= first
            and (other.from_status_kommo_id, other.to_status_kommo_id) != same
        ]
        candidates = [
            row
            for row in candidates
            if not any((other.at, other.pk) > (row.at, row.pk) for other in followed)
        ]
    # Equally near: the latest recorded, so that a report arriving now goes with the latest such move.
    return min(candidates, key=lambda row: (abs((row.at - at).total_seconds()), -row.pk), default=None)


def _moved_between(row: StageChange, at: dt.datetime, others: Sequence[StageChange]) -> bool:
    """Whether another move of the lead lies between ``row`` and a report at ``at``: then the report is a
    new move (X→Y, back to X, X→Y again), not ``row`` reported twice. Kommo's times are whole seconds, so
    moves within one second are ordered by when they were recorded (the primary key)."""
    for other in others:
        if row.at <= at:
            if (other.at, other.pk) > (row.at, row.pk) and other.at < at:
                return True
        elif at < other.at and (other.at, other.pk) < (row.at, row.pk):
            return True
    return False


# -- helpers ------------------------------------------------------------------------------------------


def mirror_pks(model: type[MirrorModel], account: KommoAccount, kommo_id: int) -> list[int]:
    """The local keys of the rows of ``model`` with that Kommo id (one, or none)."""
    return list(
        model._default_manager.filter(account=account, kommo_id=kommo_id).values_list("pk", flat=True)
    )


def _single(model: type[M], account: KommoAccount, kommo_id: int, result: BatchResult) -> UpsertResult[M]:
    row = model._default_manager.get(account=account, kommo_id=kommo_id)
    return UpsertResult(
        row,
        created=result.created > 0,
        changed=result.changed,
        new_stage_changes=tuple(result.new_stage_changes),
    )
