"""Stage stays: each deal's time in each stage, derived from its recorded moves.

A deal's stays are a function of three things only — its :class:`~apps.kommo.models.StageChange` rows
ordered by time, its ``created_at``, and (when it never moved) its current stage:

* the first stay is in the first move's from-stage (in real Kommo the creation event names no stage), from
  ``created_at`` to that move; a deal that never moved has one open stay in its current stage since
  ``created_at``;
* every move closes the open stay (``left_at``, the next stage, and how it left: forward / back / won /
  lost / to another pipeline, by the stages' ``sort``) and opens one in its to-stage;
* each stay carries ``earlier_seconds``, the length of the deal's earlier completed stays in the same
  stage and pipeline (:func:`earlier_seconds`), so that its cumulative time is read from the row.

:func:`leads_stays_refresh` derives the stays of some deals again and writes only the difference; the
mirror calls it in the same transaction as each move it records (and for deals created or re-staged by an
upsert), so a report that arrives late, twice, or from several sources gives the same stays as the moves
in their right order — and :func:`stays_rebuild` (``kommo_stays_rebuild``) gives the same rows again.
The functions take the model classes as parameters so that the migration that fills the table can pass
its historical models.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import models, transaction

from apps.kommo.models.mirror import (
    LOST_STATUS_ID,
    WON_STATUS_ID,
    Lead,
    Pipeline,
    StageChange,
    StageStay,
    Status,
)

LeftHow = StageStay.LeftHow

REBUILD_CHUNK = 2000


@dataclass(frozen=True)
class _Stage:
    pk: int
    pipeline_pk: int
    sort: int


@dataclass(frozen=True)
class _Move:
    from_status: int | None
    from_pipeline: int | None
    to_status: int
    to_pipeline: int | None
    at: dt.datetime


@dataclass
class _Stay:
    pipeline: int | None
    status: int
    entered_at: dt.datetime
    left_at: dt.datetime | None = None
    next_status: int | None = None
    next_pipeline: int | None = None
    left_how: str = ""
    earlier_seconds: float = 0.0


def earlier_in_stage(stays: Iterable[tuple[Hashable, dt.datetime, dt.datetime | None]]) -> list[float]:
    """For one deal's stays in order, each as (its stage's key, entered, left or None): the lengths of the
    deal's completed stays before it with the same key, in seconds — summed exactly in microseconds and
    divided once, the float PostgreSQL gives for ``sum(extract(epoch from left_at - entered_at))::float8``
    whatever the order of the additions."""
    done: dict[Hashable, int] = defaultdict(int)
    earlier = []
    for key, entered, left in stays:
        earlier.append(done[key] / 1_000_000)
        if left is not None:
            length = left - entered
            done[key] += (length.days * 86_400 + length.seconds) * 1_000_000 + length.microseconds
    return earlier


def earlier_seconds(stays: Sequence[_Stay]) -> None:
    """Sets each stay's ``earlier_seconds`` (:func:`earlier_in_stage`, by pipeline and stage)."""
    found = earlier_in_stage(((stay.pipeline, stay.status), stay.entered_at, stay.left_at) for stay in stays)
    for stay, seconds in zip(stays, found, strict=True):
        stay.earlier_seconds = seconds


def stays_derive(
    *,
    created_at: dt.datetime | None,
    status_kommo_id: int | None,
    pipeline_kommo_id: int | None,
    moves: Sequence[_Move],
    sorts: dict[tuple[int | None, int], int],
) -> list[_Stay]:
    """The stays of one deal from its moves in order (by time, then by when they were recorded)."""
    stays: list[_Stay] = []
    if not moves:
        if created_at is not None and status_kommo_id is not None:
            stays.append(_Stay(pipeline_kommo_id, status_kommo_id, created_at))
        return stays
    first = moves[0]
    if first.from_status is not None and created_at is not None:
        stays.append(
            _Stay(first.from_pipeline or first.to_pipeline, first.from_status, min(created_at, first.at))
        )
    for move in moves:
        current = stays[-1] if stays else None
        if current is not None and (current.status, current.pipeline) == (move.to_status, move.to_pipeline):
            continue  # a move into the stage it is in: the move away was never reported
        if current is not None:
            current.left_at = move.at
            current.next_status = move.to_status
            current.next_pipeline = move.to_pipeline
            current.left_how = _left_how(current, move, sorts)
        stays.append(_Stay(move.to_pipeline, move.to_status, move.at))
    earlier_seconds(stays)
    return stays


def _left_how(stay: _Stay, move: _Move, sorts: dict[tuple[int | None, int], int]) -> str:
    if move.to_status == WON_STATUS_ID:
        return LeftHow.WON
    if move.to_status == LOST_STATUS_ID:
        return LeftHow.LOST
    if stay.pipeline is not None and move.to_pipeline is not None and stay.pipeline != move.to_pipeline:
        return LeftHow.OTHER_PIPELINE
    before = sorts.get((stay.pipeline, stay.status))
    after = sorts.get((move.to_pipeline, move.to_status))
    if before is not None and after is not None and after < before:
        return LeftHow.BACK
    return LeftHow.FORWARD


def _stages(
    status_model: type[models.Model], account_ids: Iterable[int]
) -> dict[tuple[int, int, int], _Stage]:
    """(account pk, pipeline Kommo id, stage Kommo id) → the stage's pk, pipeline pk and sort."""
    rows = status_model._default_manager.filter(account_id__in=set(account_ids)).values_list(
        "account_id", "pipeline__kommo_id", "kommo_id", "pk", "pipeline_id", "sort"
    )
    return {
        (account_id, pipeline, status): _Stage(pk, pipeline_pk, sort)
        for account_id, pipeline, status, pk, pipeline_pk, sort in rows
    }


def _pipelines(pipeline_model: type[models.Model], account_ids: Iterable[int]) -> dict[tuple[int, int], int]:
    rows = pipeline_model._default_manager.filter(account_id__in=set(account_ids)).values_list(
        "account_id", "kommo_id", "pk"
    )
    return {(account_id, kommo_id): pk for account_id, kommo_id, pk in rows}


def leads_stays_refresh(
    *,
    lead_ids: Iterable[int],
    lead_model: type[models.Model] = Lead,
    stage_change_model: type[models.Model] = StageChange,
    stay_model: type[models.Model] = StageStay,
    status_model: type[models.Model] = Status,
    pipeline_model: type[models.Model] = Pipeline,
) -> int:
    """Derive the stays of these deals again and write the difference (rows that are already right keep
    their pk). Five queries whatever the number of deals, plus the writes. Returns how many rows were
    written (deleted + created)."""
    ids = sorted(set(lead_ids))
    if not ids:
        return 0
    leads = list(
        lead_model._default_manager.filter(pk__in=ids).values_list(
            "pk", "account_id", "created_at", "status_kommo_id", "pipeline_kommo_id"
        )
    )
    moves: dict[int, list[_Move]] = defaultdict(list)
    for lead_id, *move in (
        stage_change_model._default_manager.filter(lead_id__in=ids)
        .order_by("lead_id", "at", "pk")
        .values_list(
            "lead_id",
            "from_status_kommo_id",
            "from_pipeline_kommo_id",
            "to_status_kommo_id",
            "to_pipeline_kommo_id",
            "at",
        )
    ):
        moves[lead_id].append(_Move(*move))
    accounts = {row[1] for row in leads}
    stages = _stages(status_model, accounts)
    pipelines = _pipelines(pipeline_model, accounts)
    sorts: dict[int, dict[tuple[int | None, int], int]] = defaultdict(dict)
    for (account_id, pipeline_kommo_id, status_kommo_id), known in stages.items():
        sorts[account_id][(pipeline_kommo_id, status_kommo_id)] = known.sort

    wanted: list[dict[str, Any]] = []
    for lead_id, account_id, created_at, status_kommo_id, pipeline_kommo_id in leads:
        for stay in stays_derive(
            created_at=created_at,
            status_kommo_id=status_kommo_id,
            pipeline_kommo_id=pipeline_kommo_id,
            moves=moves.get(lead_id, []),
            sorts=sorts[account_id],
        ):
            stage = stages.get((account_id, stay.pipeline or 0, stay.status))
            following = (
                stages.get((account_id, stay.next_pipeline or 0, stay.next_status))
                if stay.next_status is not None
                else None
            )
            pipeline = stage.pipeline_pk if stage else pipelines.get((account_id, stay.pipeline or 0))
            wanted.append(
                {
                    "account_id": account_id,
                    "lead_id": lead_id,
                    "pipeline_id": pipeline,
                    "pipeline_kommo_id": stay.pipeline,
                    "status_id": stage.pk if stage else None,
                    "status_kommo_id": stay.status,
                    "entered_at": stay.entered_at,
                    "left_at": stay.left_at,
                    "next_status_id": following.pk if following else None,
                    "next_status_kommo_id": stay.next_status,
                    "next_pipeline_kommo_id": stay.next_pipeline,
                    "left_how": stay.left_how,
                    "earlier_seconds": stay.earlier_seconds,
                }
            )
    return _stays_replace(stay_model, ids, wanted)


_FIELDS = (
    "account_id",
    "lead_id",
    "pipeline_id",
    "pipeline_kommo_id",
    "status_id",
    "status_kommo_id",
    "entered_at",
    "left_at",
    "next_status_id",
    "next_status_kommo_id",
    "next_pipeline_kommo_id",
    "left_how",
    "earlier_seconds",
)


def _fields(stay_model: type[models.Model]) -> tuple[str, ...]:
    """The derived columns the model has (a migration's historical model may predate some)."""
    names = {field.attname for field in stay_model._meta.concrete_fields}
    return tuple(name for name in _FIELDS if name in names)


def _stays_replace(stay_model: type[models.Model], lead_ids: list[int], wanted: list[dict[str, Any]]) -> int:
    """Make the stays of ``lead_ids`` exactly ``wanted``: delete the rows not wanted first (so that the
    one-open-stay-per-deal constraint holds at every step), then create the missing ones."""
    fields = _fields(stay_model)
    missing = Counter(tuple(values[name] for name in fields) for values in wanted)
    stale: list[int] = []
    for pk, *values in stay_model._default_manager.filter(lead_id__in=lead_ids).values_list("pk", *fields):
        key = tuple(values)
        if missing[key] > 0:
            missing[key] -= 1
        else:
            stale.append(pk)
    to_create = [
        stay_model(**dict(zip(fields, key, strict=True)))
        for key, count in missing.items()
        for _ in range(count)
    ]
    with transaction.atomic():
        if stale:
            stay_model._default_manager.filter(pk__in=stale).delete()
        stay_model._default_manager.bulk_create(to_create, batch_size=1000)
    return len(stale) + len(to_create)


def stays_rebuild(
    *,
    account_id: int | None = None,
    chunk: int = REBUILD_CHUNK,
    lead_model: type[models.Model] = Lead,
    stage_change_model: type[models.Model] = StageChange,
    stay_model: type[models.Model] = StageStay,
    status_model: type[models.Model] = Status,
    pipeline_model: type[models.Model] = Pipeline,
) -> tuple[int, int]:
    """Derive every deal's stays again (of one account, or all), ``chunk`` deals per transaction. Stays of
    deals that no longer exist go with them (cascade). Returns (deals seen, rows written)."""
    leads = lead_model._default_manager.order_by("pk")
    if account_id is not None:
        leads = leads.filter(account_id=account_id)
    seen = written = 0
    last = 0
    while True:
        ids = list(leads.filter(pk__gt=last).values_list("pk", flat=True)[:chunk])
        if not ids:
            return seen, written
        with transaction.atomic():
            written += leads_stays_refresh(
                lead_ids=ids,
                lead_model=lead_model,
                stage_change_model=stage_change_model,
                stay_model=stay_model,
                status_model=status_model,
                pipeline_model=pipeline_model,
            )
        seen += len(ids)
        last = ids[-1]


def stays_earlier_fill(*, stay_model: type[models.Model] = StageStay, chunk: int = REBUILD_CHUNK) -> int:
    """Writes ``earlier_seconds`` on stays written before it existed, as :func:`leads_stays_refresh` would
    (in place: the rows keep their pks), ``chunk`` deals at a time. Returns the rows changed."""
    manager = stay_model._default_manager
    changed = 0
    last = 0
    while True:
        after = manager.filter(lead_id__gt=last).order_by("lead_id")
        ids = list(after.values_list("lead_id", flat=True).distinct()[:chunk])
        if not ids:
            return changed
        rows = manager.filter(lead_id__in=ids).order_by("lead_id", "entered_at", "pk")
        by_lead: dict[int, list[tuple[int, float, _Stay]]] = defaultdict(list)
        columns = ["pk", "lead_id", "pipeline_kommo_id", "status_kommo_id", "entered_at", "left_at"]
        columns.append("earlier_seconds")
        for pk, lead_id, pipeline, status, entered, left, before in rows.values_list(*columns):
            by_lead[lead_id].append((pk, before, _Stay(pipeline, status, entered, left)))
        updates = []
        for stays in by_lead.values():
            earlier_seconds([stay for _, _, stay in stays])
            for pk, before, stay in stays:
                if stay.earlier_seconds != before:
                    updates.append(stay_model(pk=pk, earlier_seconds=stay.earlier_seconds))
        with transaction.atomic():
            manager.bulk_update(updates, ["earlier_seconds"], batch_size=1000)
        changed += len(updates)
        last = ids[-1]
