"""The outbound change queue: enqueue writes to Kommo, drain them in batches, recognise their echo.

Draining one account takes every due change and sends, in this order, one batch PATCH of leads per 50
stage moves (Kommo's recommendation), one batch POST of tasks per 250 tasks and one batch POST of notes per
250 notes (Kommo's maximum per add request). A burst of 100 blocked moves therefore costs 2 + 1 + 1 calls.
*When* the queue is drained is :func:`outbound_drain_plan`'s decision (moves back at once unless a burst
is under way, tasks and notes once the moves are out and all is calm); :func:`outbound_changes_flush`
drains by the plan, and one flush per account is scheduled at a time (:func:`outbound_flush_reserve`).

Guarantees:

* an intention is queued once (``idempotency_key`` is unique);
* a write whose outcome is unknown (timeout, 5xx, connection lost mid-request) is marked ``unknown`` and
  CHECKED in Kommo before it is sent again: the lead's stage, or the lead's tasks / notes searched for the
  change's marker;
* two task changes with the same ``dedupe_key`` never leave two open tasks: before a task is created for a
  key that was written before, the deal's tasks are read and an open one carrying the key's marker means
  the new task is skipped;
* retries happen only for transient errors (the exception's ``permanent`` flag), after ``retry_after``
  for a 429, with exponential backoff otherwise, and at most :data:`MAX_ATTEMPTS` times;
* the client's circuit breaker (:class:`~apps.kommo.exceptions.KommoBlocked`) stops the drain and gives the
  claimed changes back untouched until an admin resets it; the reset drains them
  (:func:`~apps.kommo.services.accounts.account_unblock`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from apps.kommo.client import BATCH_SIZE, MAX_BATCH_SIZE, KommoClient
from apps.kommo.exceptions import (
    KommoBlocked,
    KommoError,
    KommoRateLimited,
    KommoValidationError,
)
from apps.kommo.models import KommoAccount, Lead, StageChange
from apps.kommo.models.outbound import OutboundChange
from apps.kommo.services.mirror import MoveReport, nothing_follows, stage_changes_record
from apps.kommo.types import JSON, LeadWrite, Note, NoteWrite, Task, TaskWrite, WriteResult, from_timestamp

logger = logging.getLogger(__name__)

Kind = OutboundChange.Kind
Status = OutboundChange.Status

# Per request: lead updates at Kommo's recommended 50; tasks and notes, light add requests, at Kommo's
# maximum of 250, so that a burst's tasks and notes go out in one request each.
LEADS_BATCH = BATCH_SIZE
TASKS_BATCH = MAX_BATCH_SIZE
NOTES_BATCH = MAX_BATCH_SIZE
CLAIM_LIMIT = 500
MAX_ATTEMPTS = 8
BACKOFF_BASE = 2.0
BACKOFF_CAP = 300.0
# A change left in "sending" this long (its worker died mid-call) is treated as unknown: checked, then resent.
STUCK_SENDING = dt.timedelta(minutes=5)
# How long after the portal's own move a report of the same move is recognised as its echo.
ECHO_WINDOW = dt.timedelta(minutes=10)


def outbound_change_enqueue(
    *,
    account: KommoAccount,
    kind: str,
    entity_kommo_id: int,
    payload: JSON,
    idempotency_key: str,
    dedupe_key: str = "",
) -> tuple[OutboundChange, bool]:
    """Queue one write (in the caller's transaction). The same key twice is the same change: returns the
    existing row and False."""
    return OutboundChange.objects.get_or_create(
        idempotency_key=idempotency_key,
        defaults={
            "account": account,
            "kind": kind,
            "entity_type": "leads",
            "entity_kommo_id": entity_kommo_id,
            "payload": payload,
            "dedupe_key": dedupe_key,
        },
    )


@dataclass(frozen=True)
class Intended:
    """One write to queue with :func:`outbound_changes_enqueue` (the arguments of
    :func:`outbound_change_enqueue`)."""

    kind: str
    entity_kommo_id: int
    payload: JSON
    idempotency_key: str
    dedupe_key: str = ""


def outbound_changes_enqueue(*, account: KommoAccount, writes: Sequence[Intended]) -> list[OutboundChange]:
    """Queue several writes (in the caller's transaction), as :func:`outbound_change_enqueue` would one
    by one — a key queued before is the existing row — in two queries: the rows of the keys, then one
    INSERT of the new ones. Returns the rows in the order of ``writes``."""
    keys = [write.idempotency_key for write in writes]
    rows = {row.idempotency_key: row for row in OutboundChange.objects.filter(idempotency_key__in=keys)}
    new = [
        OutboundChange(
            account=account,
            kind=write.kind,
            entity_type="leads",
            entity_kommo_id=write.entity_kommo_id,
            payload=write.payload,
            idempotency_key=write.idempotency_key,
            dedupe_key=write.dedupe_key,
        )
        for write in {write.idempotency_key: write for write in writes}.values()
        if write.idempotency_key not in rows
    ]
    if new:
        try:
            with transaction.atomic():
                created = OutboundChange.objects.bulk_create(new)
        except IntegrityError:  # queued meanwhile by another transaction: one by one, as the single call
            created = [
                outbound_change_enqueue(
                    account=account,
                    kind=row.kind,
                    entity_kommo_id=row.entity_kommo_id,
                    payload=row.payload,
                    idempotency_key=row.idempotency_key,
                    dedupe_key=row.dedupe_key,
                )[0]
                for row in new
            ]
        rows.update((row.idempotency_key, row) for row in created)
    return [rows[key] for key in keys]


def outbound_move_echo_claim(
    *, account_id: int, lead_kommo_id: int, status_kommo_id: int, pipeline_kommo_id: int | None
) -> OutboundChange | None:
    """The portal's own recent move of this lead to this stage, if a reported move is its echo; the
    change is marked echoed so that one move is recognised once."""
    return outbound_move_echoes_claim(
        account_id=account_id, moves=[(lead_kommo_id, status_kommo_id, pipeline_kommo_id)]
    )[0]


def outbound_move_echoes_claim(
    *, account_id: int, moves: Sequence[tuple[int, int, int | None]]
) -> list[OutboundChange | None]:
    """:func:`outbound_move_echo_claim` for several reported moves — (lead, stage, pipeline or None) — in
    one read and one UPDATE: each is matched, in order, to the latest of the portal's recent moves of
    that lead to that stage not matched yet. Returns the claimed change of each move, or None."""
    if not moves:
        return []
    now = timezone.now()
    candidates = list(
        OutboundChange.objects.select_for_update()
        .filter(
            account_id=account_id,
            kind=Kind.LEAD_STATUS,
            entity_kommo_id__in={lead_kommo_id for lead_kommo_id, _, _ in moves},
            status__in=[Status.SENDING, Status.SENT, Status.UNKNOWN],
            sending_at__gte=now - ECHO_WINDOW,
            echoed_at__isnull=True,
        )
        .order_by("-sending_at")
    )
    claimed: list[OutboundChange | None] = []
    for lead_kommo_id, status_kommo_id, pipeline_kommo_id in moves:
        change = next(
            (
                candidate
                for candidate in candidates
                if candidate.echoed_at is None
                and candidate.entity_kommo_id == lead_kommo_id
                and candidate.payload.get("status_id") == status_kommo_id
                and (pipeline_kommo_id is None or candidate.payload.get("pipeline_id") == pipeline_kommo_id)
            ),
            None,
        )
        if change is not None:
            change.echoed_at = change.modified = now
        claimed.append(change)
    echoed = [change.pk for change in claimed if change is not None]
    if echoed:
        OutboundChange.objects.filter(pk__in=echoed).update(echoed_at=now, modified=now)
    return claimed


def outbound_change_retry(*, change: OutboundChange) -> bool:
    """Give a failed change another round (admin action): back to pending, attempts reset."""
    updated = OutboundChange.objects.filter(pk=change.pk, status=Status.FAILED).update(
        status=Status.PENDING, attempts=0, next_attempt_at=None, error="", modified=timezone.now()
    )
    return updated == 1


# -- draining --------------------------------------------------------------------------------------------


@dataclass
class DrainResult:
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    unknown: int = 0
    deferred: int = 0
    blocked: bool = False
    retry_in: float | None = None  # seconds until the next due change, None when nothing is left to do


@dataclass
class _Claimed:
    row: OutboundChange
    was_unknown: bool
    outcome: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    kommo_updated_at: dt.datetime | None = None  # the entity's updated_at after the write, when known


class _Stop(Exception):
    """The circuit breaker is open: nothing more is sent in this drain."""


def _backoff(attempts: int) -> float:
    return float(min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1)))


def _claim(account_id: int, now: dt.datetime, kinds: Collection[str], *, limit: int) -> list[_Claimed]:
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    stuck = Q(status=Status.SENDING, sending_at__lt=now - STUCK_SENDING)
    with transaction.atomic():
        rows = list(
            OutboundChange.objects.select_for_update(skip_locked=True)
            .filter(account_id=account_id, kind__in=kinds)
            .filter((Q(status__in=[Status.PENDING, Status.UNKNOWN]) & due) | stuck)
            .order_by("id")[:limit]
        )
        claimed = [_Claimed(row=row, was_unknown=row.status != Status.PENDING) for row in rows]
        for item in claimed:
            item.row.status = Status.SENDING
            item.row.sending_at = now
            item.row.attempts += 1
        # One plain UPDATE: the same values for every row (bulk_update would build a CASE per row).
        OutboundChange.objects.filter(pk__in=[row.pk for row in rows]).update(
            status=Status.SENDING, sending_at=now, attempts=F("attempts") + 1
        )
    return claimed


class _RequestIds:
    """Remembers the ``X-Request-Id`` of the client's last answer (Kommo's id of the request)."""

    def __init__(self, client: KommoClient) -> None:
        self.last = ""
        hooks: Any = client.session.hooks
        hooks.setdefault("response", []).append(self._seen)

    def _seen(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        self.last = response.headers.get("X-Request-Id", "") or ""
        return response


class _Drain:
    def __init__(self, account: KommoAccount, client: KommoClient, now: dt.datetime) -> None:
        self.account = account
        self.client = client
        self.now = now
        self.request_ids = _RequestIds(client)

    # -- outcomes --

    def _sent(
        self,
        item: _Claimed,
        ids: Iterable[int],
        updated_at: dt.datetime | None = None,
        answered_at: dt.datetime | None = None,
    ) -> None:
        item.outcome = Status.SENT
        item.kommo_updated_at = updated_at
        item.fields = {
            "result_ids": list(ids),
            "sent_at": answered_at or timezone.now(),
            "error": "",
            "kommo_request_id": self.request_ids.last,
            "next_attempt_at": None,
        }

    def _skipped(self, item: _Claimed, why: str) -> None:
        item.outcome = Status.SKIPPED
        item.fields = {"error": why, "next_attempt_at": None}

    def _failed(self, item: _Claimed, error: KommoError | str) -> None:
        item.outcome = Status.FAILED
        request_id = error.request_id if isinstance(error, KommoError) else None
        item.fields = {"error": str(error), "kommo_request_id": request_id or "", "next_attempt_at": None}

    def _transient(self, item: _Claimed, error: KommoError, *, outcome_known: bool) -> None:
        """A transient error: retried later, checked first when the write may have happened."""
        if item.row.attempts >= MAX_ATTEMPTS:
            self._failed(item, f"gave up after {item.row.attempts} attempts: {error}")
            return
        delay = _backoff(item.row.attempts)
        if isinstance(error, KommoRateLimited) and error.retry_after is not None:
            delay = max(delay, error.retry_after)
        item.outcome = Status.PENDING if outcome_known else Status.UNKNOWN
        item.fields = {
            "error": str(error),
            "kommo_request_id": error.request_id or "",
            "next_attempt_at": self.now + dt.timedelta(seconds=delay),
        }

    def _error(self, items: Sequence[_Claimed], error: KommoError) -> None:
        """What an error of one write call means for the changes it carried."""
        if isinstance(error, KommoBlocked):
            raise _Stop from error
        if isinstance(error, KommoValidationError) and error.errors:
            # Every item carries its change's pk as request_id, and Kommo names failing items by it.
            for item in items:
                issues = error.errors.get(str(item.row.pk))
                if issues:
                    self._failed(
                        item, f"{error} — " + "; ".join(f"{i.path}: {i.code} {i.detail}" for i in issues)
                    )
                else:
                    item.outcome, item.fields = Status.PENDING, {"error": "", "next_attempt_at": None}
            return
        for item in items:
            if error.permanent:
                self._failed(item, error)
            else:
                # A 429 surely wrote nothing; a timeout, a 5xx or a lost connection may have: check first.
                self._transient(item, error, outcome_known=isinstance(error, KommoRateLimited))

    def _write(
        self, items: Sequence[_Claimed], size: int, send: Callable[[Sequence[_Claimed]], list[WriteResult]]
    ) -> None:
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            try:
                results = send(chunk)
            except KommoError as error:
                self._error(chunk, error)
                continue
            answered_at = timezone.now()  # Kommo accepted the chunk's items with one answer
            by_request = {result.request_id: result for result in results if result.request_id}
            for index, item in enumerate(chunk):
                result = by_request.get(str(item.row.pk))
                if result is None and len(results) == len(chunk):
                    result = results[index]
                if result is None:
                    self._transient(
                        item, KommoError("Kommo's answer did not name this item"), outcome_known=False
                    )
                else:
                    self._sent(item, [result.id], result.updated_at, answered_at)

    # -- lead stages --

    def moves(self, items: list[_Claimed]) -> None:
        newest: dict[int, _Claimed] = {}
        for item in items:
            previous = newest.get(item.row.entity_kommo_id)
            if previous is not None:
                self._skipped(previous, f"superseded by change #{item.row.pk} of the same deal")
            newest[item.row.entity_kommo_id] = item
        todo = list(newest.values())
        checking = [item for item in todo if item.was_unknown]
        if checking:
            try:
                leads = {
                    lead.id: lead
                    for lead in self.client.leads_list(
                        {"id": [item.row.entity_kommo_id for item in checking]}
                    )
                }
            except KommoError as error:
                self._error(checking, error)
                todo = [item for item in todo if not item.was_unknown]
            else:
                for item in checking:
                    lead = leads.get(item.row.entity_kommo_id)
                    payload = item.row.payload
                    if lead is None or lead.is_deleted:
                        self._failed(item, "the deal is no longer in Kommo")
                    elif lead.status_id == payload["status_id"]:
                        self._sent(item, [lead.id], lead.updated_at)
                    elif lead.status_id != payload.get("expected_status_id", lead.status_id):
                        self._skipped(item, f"the deal moved on since (now in stage {lead.status_id})")
                todo = [item for item in todo if not item.outcome]

        def send(chunk: Sequence[_Claimed]) -> list[WriteResult]:
            writes = [
                LeadWrite(
                    id=item.row.entity_kommo_id,
                    status_id=item.row.payload["status_id"],
                    pipeline_id=item.row.payload.get("pipeline_id"),
                    request_id=str(item.row.pk),
                )
                for item in chunk
            ]
            return self.client.leads_update(writes, batch_size=LEADS_BATCH)

        self._write(todo, LEADS_BATCH, send)

    # -- tasks and notes --

    def _existing(
        self, items: list[_Claimed], read: Callable[[list[int]], Iterable[Task | Note]]
    ) -> dict[int, list[Task | Note]] | None:
        """The deal's tasks or notes, for the changes that must be checked; None when the read failed."""
        lead_ids = sorted({item.row.entity_kommo_id for item in items})
        found: dict[int, list[Task | Note]] = {lead_id: [] for lead_id in lead_ids}
        try:
            for entry in read(lead_ids):
                if entry.entity_id in found:
                    found[entry.entity_id].append(entry)
        except KommoError as error:
            self._error(items, error)
            return None
        return found

    def _needs_check(self, items: list[_Claimed]) -> list[_Claimed]:
        keys = {item.row.dedupe_key for item in items if item.row.dedupe_key}
        earlier = set(
            OutboundChange.objects.filter(
                account=self.account,
                dedupe_key__in=keys,
                status__in=[Status.SENT, Status.UNKNOWN, Status.SENDING],
            )
            .exclude(pk__in=[item.row.pk for item in items])
            .values_list("dedupe_key", flat=True)
        )
        return [item for item in items if item.was_unknown or (item.row.dedupe_key in earlier)]

    def tasks(self, items: list[_Claimed]) -> None:
        first: dict[str, _Claimed] = {}
        todo: list[_Claimed] = []
        for item in items:
            key = item.row.dedupe_key
            if key and key in first:
                self._skipped(item, f"change #{first[key].row.pk} already creates this deal's task")
                continue
            if key:
                first[key] = item
            todo.append(item)
        checking = self._needs_check(todo)
        if checking:
            existing = self._existing(
                checking,
                lambda ids: self.client.tasks_list({"entity_type": "leads", "entity_id": ids}),
            )
            if existing is None:
                todo = [item for item in todo if item not in checking]
            else:
                for item in checking:
                    tasks = [entry for entry in existing[item.row.entity_kommo_id] if isinstance(entry, Task)]
                    ours = [task for task in tasks if item.row.payload["marker"] in task.text]
                    open_same = [
                        task
                        for task in tasks
                        if not task.is_completed and item.row.payload.get("dedupe_marker", "\0") in task.text
                    ]
                    if ours:
                        self._sent(item, [ours[0].id])
                    elif open_same:
                        self._skipped(item, f"open task #{open_same[0].id} already asks for it")
                todo = [item for item in todo if not item.outcome]

        def send(chunk: Sequence[_Claimed]) -> list[WriteResult]:
            writes = []
            for item in chunk:
                payload = item.row.payload
                due = from_timestamp(payload["complete_till"])
                assert due is not None
                writes.append(
                    TaskWrite(
                        text=payload["text"],
                        complete_till=due,
                        entity_id=item.row.entity_kommo_id,
                        entity_type="leads",
                        task_type_id=payload.get("task_type_id"),
                        responsible_user_id=payload.get("responsible_user_id"),
                        request_id=str(item.row.pk),
                    )
                )
            return self.client.tasks_create(writes, batch_size=TASKS_BATCH)

        self._write(todo, TASKS_BATCH, send)

    def notes(self, items: list[_Claimed]) -> None:
        todo = list(items)
        checking = [item for item in todo if item.was_unknown]
        if checking:
            existing = self._existing(
                checking,
                lambda ids: self.client.notes_list("leads", {"entity_id": ids}),
            )
            if existing is None:
                todo = [item for item in todo if not item.was_unknown]
            else:
                for item in checking:
                    notes = [entry for entry in existing[item.row.entity_kommo_id] if isinstance(entry, Note)]
                    ours = [note for note in notes if item.row.payload["marker"] in (note.text or "")]
                    if ours:
                        self._sent(item, [ours[0].id])
                todo = [item for item in todo if not item.outcome]

        def send(chunk: Sequence[_Claimed]) -> list[WriteResult]:
            writes = [
                NoteWrite(
                    entity_id=item.row.entity_kommo_id,
                    text=item.row.payload["text"],
                    request_id=str(item.row.pk),
                )
                for item in chunk
            ]
            return self.client.notes_create("leads", writes, batch_size=NOTES_BATCH)

        self._write(todo, NOTES_BATCH, send)


def _record_gate_moves(account: KommoAccount, items: Sequence[_Claimed]) -> None:
    """The portal's own moves enter the stage history as ``source=gate`` right away, at Kommo's own
    ``updated_at`` of the write, so that Kommo's webhook of the same move is matched to the same row
    rather than evaluated as a manager's move. A move recorded here needs no echo any more. The drain's
    moves are recorded together (``stage_changes_record``: one lock of their deals, one read of their
    recent moves and of the stages, one derivation of their stays), not one deal at a time."""
    moved = [item for item in items if item.row.kind == Kind.LEAD_STATUS and item.outcome == Status.SENT]
    if not moved:
        return
    leads = {
        lead.kommo_id: lead
        for lead in Lead.objects.filter(
            account=account, kommo_id__in=[item.row.entity_kommo_id for item in moved]
        )
    }
    reports = []
    for item in moved:
        lead = leads.get(item.row.entity_kommo_id)
        if lead is None:
            continue
        payload = item.row.payload
        reports.append(
            MoveReport(
                lead=lead,
                from_status_id=payload.get("expected_status_id"),
                to_status_id=payload["status_id"],
                from_pipeline_id=payload.get("expected_pipeline_id"),
                to_pipeline_id=payload.get("pipeline_id"),
                at=item.kommo_updated_at or item.fields["sent_at"],
            )
        )
    # One transaction for the drain's moves, the portal's own: not ones for the gates to judge.
    stage_changes_record(
        account=account, reports=reports, source=StageChange.Source.GATE, follow=nothing_follows
    )
    OutboundChange.objects.filter(pk__in=[item.row.pk for item in moved], echoed_at__isnull=True).update(
        echoed_at=timezone.now()
    )


def outbound_changes_drain(
    *,
    account_id: int,
    kinds: Collection[str] | None = None,
    client: KommoClient | None = None,
    limit: int | None = None,
) -> DrainResult:
    """Send every due change of one account (of ``kinds``, default all; the oldest ``limit`` of them when
    given) in batches — moves, then tasks, then notes — and record each outcome. Safe to run concurrently:
    changes are claimed with ``SKIP LOCKED``. ``retry_in`` is about the same kinds."""
    account = KommoAccount.objects.get(pk=account_id)
    client = client or KommoClient(account)
    # The first write could not go out before a slot is free: changes queued meanwhile join it.
    client.wait_for_free_slot()
    now = timezone.now()
    kinds = list(kinds) if kinds is not None else list(Kind.values)
    claimed = _claim(account_id, now, kinds, limit=CLAIM_LIMIT if limit is None else min(limit, CLAIM_LIMIT))
    result = DrainResult()
    if claimed:
        drain = _Drain(account, client, now)
        by_kind: dict[str, list[_Claimed]] = {kind: [] for kind in Kind.values}
        for item in claimed:
            by_kind[item.row.kind].append(item)
        try:
            drain.moves(by_kind[Kind.LEAD_STATUS])
            # Tasks and notes can wait: moves back (of this drain's successors) and re-fetches go first
            # when they want the same slot of the rate limit.
            with client.behind_others():
                drain.tasks(by_kind[Kind.TASK_CREATE])
                drain.notes(by_kind[Kind.NOTE_CREATE])
        except _Stop:
            result.blocked = True
        _finish(claimed, result)
        _record_gate_moves(account, claimed)
    result.retry_in = None if result.blocked else _next_due(account_id, kinds)
    return result


# -- when to drain ----------------------------------------------------------------------------------------
#
# Moves back are urgent (the manager is looking at the board); tasks and notes are not, and every request
# spends one of the account's 7 per second, which webhook processing needs too. So:
#
# * a move back goes out at once — unless a burst is under way, when the moves wait for company until the
#   burst is over, a bound, or a PATCH is full (LEADS_BATCH: full PATCHes of the oldest go, the rest waits
#   on). A burst: Kommo has told the portal of more moves than it has processed yet (BACKLOG_EVENTS or
#   more of the account's deliveries that report stage moves waiting, ``moves_backlog``: the echoes of the
#   portal's own tasks and notes and Kommo's leads[update] twins report none; 5 of them are the 10
#   deliveries of the plan that met both budgets, when each move came as leads[status] and leads[update]
#   only), or BURST_MOVES or more moves back were queued within BURST_WINDOW (half as many again as the
#   steady 10 per second the latency budget is set for; the window spans the gaps between webhook
#   processing's batches, which bring a burst in groups). Neither is a sure sign of a burst — a steady
#   stream looks the same whenever the worker falls half a second behind and then decides a backlog at
#   once — so unless the burst is certain, a move back waits for company at most until MOVE_WAIT_MAX
#   after its move was reported (``reported_at`` in the change's payload, epoch seconds; when it was
#   queued for a change without one), and at most MOVE_HOLD_MAX after the oldest was queued: a manager's
#   move is undone within a second of its report;
# * a burst is under way, and certain, when Kommo *reported* the moves together — BURST_MOVES or more of
#   the account's recorded moves (``StageChange``) were made at the Kommo time of a waiting move back's
#   move (``moved_at`` in its payload; Kommo's times are whole seconds, so this is one second of Kommo's
#   clock: a steady 10 per second is made 10 a second, however late or bunched its reports and
#   decisions), whatever the signs above say. They count whether the gates have decided them or not —
#   webhook processing records a batch's moves before the gates decide them, so the burst shows before
#   most of its moves back are queued — but not the portal's own moves back coming back
#   (``source=gate``) nor moves whose time is not Kommo's (``at_is_exact`` false).
#   Such a burst's moves back wait at most BURST_HOLD_MAX after the oldest was queued (a loaded worker
#   decides a burst of 100 over 4 s or more). Also certain — a hold the signs above began is then not
#   bound by MOVE_WAIT_MAX, only by MOVE_HOLD_MAX — when BURST_MOVES of the moves back queued within
#   BURST_MEMORY were made within MADE_TOGETHER of each other, or BURST_BACKLOG or more deliveries of
#   moves wait;
# * a burst is over — its moves back go at once — when no delivery of moves waits and none of the
#   account's recorded moves waits for the gates' decision (``undecided``; only the gates know it: they
#   give it when they flush after deciding and in their scheduled flush, ``apps.flows.gates``). A hold of
#   a burst Kommo reported together is looked at again every BACKLOG_RECHECK by a caller that knows
#   ``undecided``, and at its bound by one that does not (``apps.kommo.tasks.outbound_flush``), which
#   cannot see its end;
# * tasks and notes go out right after the moves, in the same drain, once every move back of the account
#   is out and all is calm (no webhook delivery waiting, fewer than CALM_MOVES moves queued within
#   CALM_WINDOW) — a lone block is moved back, tasked and noted in one drain, a burst's tasks and notes go
#   in one request each after its last move — and at the latest FOLLOW_UP_MAX after the oldest was queued,
#   so that a steady stream of blocks sends them every few seconds rather than three requests per move;
#   but never before the moves back of a burst Kommo reported together that are held: right after them.

BURST_WINDOW = dt.timedelta(seconds=1)
BURST_MOVES = 15
BACKLOG_EVENTS = 5
BACKLOG_RECHECK = dt.timedelta(seconds=0.5)  # a hold for a backlog is looked at again this often
MOVE_HOLD_MAX = dt.timedelta(seconds=3)
# A burst Kommo reported together: a loaded worker decides a burst of 100 over 4 s or more.
BURST_HOLD_MAX = dt.timedelta(seconds=8)
BURST_BACKLOG = 20  # deliveries of moves waiting: 2 s of the steady 10 per second, a burst for sure
MOVE_WAIT_MAX = dt.timedelta(seconds=0.5)  # after the move's report, unless a burst is certain
# Moves made within this of each other count as made together: Kommo's times are whole seconds, so this
# is one second of Kommo's clock (a steady 10 moves a second is 10 made together, a burst more).
MADE_TOGETHER = dt.timedelta(seconds=0.9)
# ...among the moves back queued this long: a loaded worker decides a burst's moves in groups seconds apart.
BURST_MEMORY = dt.timedelta(seconds=10)
CALM_WINDOW = dt.timedelta(seconds=1)
CALM_MOVES = 3
FOLLOW_UP_MAX = dt.timedelta(seconds=10)
FOLLOW_UP_KINDS = (Kind.TASK_CREATE, Kind.NOTE_CREATE)


@dataclass(frozen=True)
class DrainPlan:
    """When the waiting changes of an account are due: seconds from now (0: now), None when none waits."""

    moves_in: float | None
    follow_ups_in: float | None
    moves_batch: int | None = None  # when the moves back are due: how many of them (oldest first); None: all

    @property
    def next_in(self) -> float | None:
        times = [value for value in (self.moves_in, self.follow_ups_in) if value is not None]
        return min(times) if times else None


def _reported(reported_at: Any, queued: dt.datetime) -> dt.datetime:
    """When a move back's move was reported or made (the payload's epoch seconds), else when it was
    queued."""
    if isinstance(reported_at, int | float):
        return dt.datetime.fromtimestamp(reported_at, tz=dt.UTC)
    return queued


def _most_within(times: Sequence[dt.datetime], window: dt.timedelta) -> int:
    """The most of ``times`` (sorted) that lie within one ``window`` of each other."""
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] > window:
            first += 1
        most = max(most, last - first + 1)
    return most


def _seconds(until: dt.datetime, now: dt.datetime) -> float:
    return max(0.0, (until - now).total_seconds())


def _eases_at(queued: Sequence[dt.datetime], window: dt.timedelta, limit: int) -> dt.datetime:
    """When fewer than ``limit`` of ``queued`` (times within the last ``window``, oldest first) are left in
    the window, if nothing more is queued."""
    return queued[len(queued) - limit] + window


def _reported_together(account_id: int, made: Collection[dt.datetime]) -> int:
    """The most of the account's recorded moves made at any one of the Kommo times ``made`` (one query, on
    the ``kommo_stage_change_at`` index): decided by the gates or not, the portal's own moves back coming
    back and moves whose time is not Kommo's left out."""
    if not made:
        return 0
    counts = (
        StageChange.objects.filter(account_id=account_id, at__in=made, at_is_exact=True)
        .exclude(source=StageChange.Source.GATE)
        .order_by()
        .values_list("at")
        .annotate(moves=Count("pk"))
        .values_list("moves", flat=True)
    )
    return max(counts, default=0)


def outbound_drain_plan(
    *,
    account_id: int,
    now: dt.datetime | None = None,
    backlog: int = 0,
    moves_backlog: int | None = None,
    undecided: int | None = None,
) -> DrainPlan:
    """When the account's waiting changes should be sent, by the rules above. A change waiting for a
    retry is due at its ``next_attempt_at``. ``backlog``: how many of the account's webhook deliveries
    wait to be processed, whatever they report (``webhook_backlog``): while any waits it is not calm.
    ``moves_backlog``: how many of them report stage moves (``webhook_moves_backlog``): the moves back wait
    for company when they are many; ``backlog`` when not given. ``undecided``: how many of the account's
    recorded moves wait for the gates' decision, when the caller knows (the gates' flushes); none, and no
    delivery of moves waiting, is the end of a burst."""
    now = now or timezone.now()
    rows = list(
        OutboundChange.objects.filter(
            account_id=account_id, status__in=[Status.PENDING, Status.UNKNOWN, Status.SENDING]
        ).values_list(
            "kind",
            "status",
            "created",
            "next_attempt_at",
            "sending_at",
            "payload__reported_at",
            "payload__moved_at",
        )
    )
    lately = list(
        OutboundChange.objects.filter(
            account_id=account_id,
            kind=Kind.LEAD_STATUS,
            created__gt=now - max(BURST_WINDOW, CALM_WINDOW, BURST_MEMORY),
        ).values_list("created", "payload__moved_at")
    )
    queued = sorted(created for created, _ in lately)
    burst = [at for at in queued if at > now - BURST_WINDOW]
    recent = [at for at in queued if at > now - CALM_WINDOW]
    # The moves of the moves back queued within BURST_MEMORY, by when Kommo says they were made (the
    # payload's moved_at): a burst made them together, however the deliveries or the worker's lag spread
    # or bunched their reports and decisions.
    made = sorted(_reported(moved_at, created) for created, moved_at in lately)

    reported: list[dt.datetime] = []  # when the moves of the due moves back were reported
    made_at: set[dt.datetime] = set()  # ...and when Kommo says they were made, where it does

    def waiting(kinds: Collection[str]) -> tuple[list[dt.datetime], list[dt.datetime]]:
        """(queued times of the due ones, retry times of the others) among the waiting changes."""
        due, later = [], []
        for kind, status, created, retry_at, sending_at, reported_at, moved_at in rows:
            if kind not in kinds:
                continue
            if status == Status.SENDING:
                if sending_at is not None and sending_at < now - STUCK_SENDING:
                    due.append(created)  # its drain died mid-call: checked, then sent again
                continue
            if retry_at is not None and retry_at > now:
                later.append(retry_at)
            else:
                due.append(created)
                if kind == Kind.LEAD_STATUS:
                    reported.append(_reported(reported_at, created))
                    if isinstance(moved_at, int | float):
                        made_at.add(dt.datetime.fromtimestamp(moved_at, tz=dt.UTC))
        return due, later

    moves, moves_later = waiting([Kind.LEAD_STATUS])
    moves_at: dt.datetime | None = None
    held_until: dt.datetime | None = None  # the moves back of a burst Kommo reported together wait till then
    moves_batch: int | None = None  # how many of them go now, when not all (full PATCHes of a burst)
    if moves:
        oldest = min(moves)
        moves_at = now
        moves_told = backlog if moves_backlog is None else moves_backlog
        bursting = len(burst) >= BURST_MOVES or moves_told >= BACKLOG_EVENTS
        told_together = _reported_together(account_id, made_at)
        together = told_together >= BURST_MOVES
        dense = _most_within(made, MADE_TOGETHER) >= BURST_MOVES
        certain = together or dense or moves_told >= BURST_BACKLOG
        over = undecided == 0 and moves_told == 0
        hold_max = BURST_HOLD_MAX if together else MOVE_HOLD_MAX
        if (bursting or together) and not over and now - oldest < hold_max:
            if together:
                # What ends it before the bound is the burst's end, which only a caller that knows the
                # undecided moves sees: looked at again soon by such a caller, at the bound otherwise.
                moves_at = oldest + hold_max
                if undecided is not None:
                    moves_at = min(moves_at, now + BACKLOG_RECHECK)
                held_until = moves_at
            else:
                over_at = now + BACKLOG_RECHECK
                if len(burst) >= BURST_MOVES:
                    over_at = max(over_at, _eases_at(burst, BURST_WINDOW, BURST_MOVES))
                moves_at = min(oldest + hold_max, over_at)
            if not certain:
                moves_at = min(moves_at, min(reported) + MOVE_WAIT_MAX)
            if moves_at > now and len(moves) >= LEADS_BATCH:
                # Full PATCHes go now (the oldest moves back); the rest waits on for company.
                moves_batch = len(moves) // LEADS_BATCH * LEADS_BATCH
                moves_at = now
        why = (
            "reported together"
            if together
            else "made together"
            if dense
            else "backlog"
            if certain
            else "not sure"
        )
        logger.debug(
            "outbound plan: account %s, %d moves back waiting (oldest queued %.2f s ago, reported %.2f s "
            "ago), %d queued in the last second, %d deliveries of moves waiting, %d reported together, "
            "%s undecided: %s",
            account_id,
            len(moves),
            (now - oldest).total_seconds(),
            (now - min(reported)).total_seconds(),
            len(burst),
            moves_told,
            told_together,
            "?" if undecided is None else undecided,
            f"batch ({why})" if moves_batch else "now" if moves_at <= now else f"held ({why})",
        )
    elif moves_later:
        moves_at = min(moves_later)

    follow_ups, follow_ups_later = waiting(FOLLOW_UP_KINDS)
    follow_ups_at: dt.datetime | None = None
    if follow_ups:
        deadline = min(follow_ups) + FOLLOW_UP_MAX
        if held_until is not None:  # not before the burst's moves back: right after them, in their drain
            deadline = max(deadline, held_until)
        calm_at = now if len(recent) < CALM_MOVES else _eases_at(recent, CALM_WINDOW, CALM_MOVES)
        if backlog:
            calm_at = max(calm_at, now + BACKLOG_RECHECK)
        moves_out = not any(kind == Kind.LEAD_STATUS for kind, *_ in rows)
        if now >= deadline or len(follow_ups) >= 2 * TASKS_BATCH or (moves_out and calm_at <= now):
            follow_ups_at = now
        else:
            # Not before the moves are out: the drain that sends them looks again right after.
            follow_ups_at = min(deadline, max(calm_at, moves_at or now))
    elif follow_ups_later:
        follow_ups_at = min(follow_ups_later)

    return DrainPlan(
        moves_in=None if moves_at is None else _seconds(moves_at, now),
        follow_ups_in=None if follow_ups_at is None else _seconds(follow_ups_at, now),
        moves_batch=moves_batch,
    )


@dataclass
class FlushResult:
    moves: DrainResult | None = None
    follow_ups: DrainResult | None = None
    blocked: bool = False
    next_in: float | None = None  # seconds until more is due; None: nothing waits (or the breaker is open)

    @property
    def sent(self) -> int:
        return sum(result.sent for result in (self.moves, self.follow_ups) if result is not None)


def outbound_changes_flush(
    *,
    account_id: int,
    client: KommoClient | None = None,
    backlog: int = 0,
    moves_backlog: int | None = None,
    undecided: int | None = None,
) -> FlushResult:
    """One drain as the plan has it: the moves back when they are due, then — planned again once they
    are out — the tasks and notes when they are; ``next_in`` says when to come back. Nothing is sent, and
    nothing is planned, while the account's circuit breaker is open (its reset drains the queue).
    ``backlog``, ``moves_backlog``: the account's webhook deliveries waiting, and ``undecided``: its moves
    waiting for the gates, as the plan wants them."""
    result = FlushResult()
    account = KommoAccount.objects.get(pk=account_id)
    if account.blocked_since is not None:
        result.blocked = True
        return result
    client = client or KommoClient(account)
    plan = outbound_drain_plan(
        account_id=account_id, backlog=backlog, moves_backlog=moves_backlog, undecided=undecided
    )
    if plan.moves_in == 0:
        result.moves = outbound_changes_drain(
            account_id=account_id, kinds=[Kind.LEAD_STATUS], client=client, limit=plan.moves_batch
        )
        if result.moves.blocked:
            result.blocked = True
            return result
        plan = outbound_drain_plan(
            account_id=account_id, backlog=backlog, moves_backlog=moves_backlog, undecided=undecided
        )
    if plan.follow_ups_in == 0:
        result.follow_ups = outbound_changes_drain(
            account_id=account_id, kinds=FOLLOW_UP_KINDS, client=client
        )
        if result.follow_ups.blocked:
            result.blocked = True
            return result
        plan = outbound_drain_plan(
            account_id=account_id, backlog=backlog, moves_backlog=moves_backlog, undecided=undecided
        )
    result.next_in = plan.next_in
    return result


# A reserved flush that has not started this long after its time was lost (its task or worker died).
FLUSH_LOST_AFTER = dt.timedelta(seconds=60)


def outbound_flush_reserve(*, account_id: int, delay: float) -> dt.datetime | None:
    """Reserve the account's next planned flush ``delay`` seconds from now. The reserved time: the caller
    schedules it; None: a flush is already scheduled no later than that (it plans everything due by then).
    One conditional UPDATE, so that a burst of decisions schedules one flush, not one per decision."""
    now = timezone.now()
    at = now + dt.timedelta(seconds=delay)
    free = (
        Q(outbound_flush_at__isnull=True)
        | Q(outbound_flush_at__gt=at)
        | Q(outbound_flush_at__lt=now - FLUSH_LOST_AFTER)
    )
    reserved = KommoAccount.objects.filter(free, pk=account_id).update(outbound_flush_at=at) == 1
    return at if reserved else None


def outbound_flush_unreserve(*, account_id: int, at: dt.datetime) -> None:
    """Give back the reservation made for ``at`` whose flush could not be scheduled, unless another
    caller has reserved a flush since (that one stands)."""
    KommoAccount.objects.filter(pk=account_id, outbound_flush_at=at).update(outbound_flush_at=None)


def outbound_flush_release(*, account_id: int) -> None:
    """A scheduled flush is starting: its reservation is over (a task may start a little before its time,
    hence the second of slack; releasing a reservation early only costs an extra flush)."""
    soon = timezone.now() + dt.timedelta(seconds=1)
    KommoAccount.objects.filter(pk=account_id, outbound_flush_at__lte=soon).update(outbound_flush_at=None)


def _finish(claimed: Sequence[_Claimed], result: DrainResult) -> None:
    """Store every outcome; what the drain did not reach (the breaker opened) goes back as it was."""
    counters: dict[str, str] = {
        Status.SENT: "sent",
        Status.SKIPPED: "skipped",
        Status.FAILED: "failed",
        Status.UNKNOWN: "unknown",
        Status.PENDING: "deferred",
    }
    # One UPDATE per set of fields an outcome writes (a handful), not one per change: bulk_update does not
    # call save(), so ``modified`` (auto_now) is set here.
    now = timezone.now()
    groups: dict[tuple[str, ...], list[OutboundChange]] = {}
    for item in claimed:
        if not item.outcome:
            item.outcome = Status.UNKNOWN if item.was_unknown else Status.PENDING
            item.fields = {"error": "not sent: calls to Kommo are stopped (circuit breaker open)"}
            item.row.attempts -= 1
        else:
            setattr(result, counters[item.outcome], getattr(result, counters[item.outcome]) + 1)
        item.row.status = item.outcome
        item.row.modified = now
        for name, value in item.fields.items():
            setattr(item.row, name, value)
        groups.setdefault(tuple(sorted(item.fields)), []).append(item.row)
    with transaction.atomic():
        for names, rows in groups.items():
            _store(rows, ["status", "attempts", "modified", *names])
    if result.failed:
        logger.warning("outbound changes: %d failed", result.failed)


def _store(rows: Sequence[OutboundChange], names: Sequence[str]) -> None:
    """Write ``names`` of ``rows``: the columns every row gives the same value in one plain UPDATE, only
    the others through ``bulk_update`` (which builds a CASE over the rows for each column it writes: for
    a drain's 50 moves, the Python to build it took longer than the round trip)."""
    uniform: dict[str, Any] = {}
    varying: list[str] = []
    for name in names:
        values = [getattr(row, name) for row in rows]
        if all(value == values[0] for value in values):
            uniform[name] = values[0]
        else:
            varying.append(name)
    if uniform:
        OutboundChange.objects.filter(pk__in=[row.pk for row in rows]).update(**uniform)
    if varying:
        OutboundChange.objects.bulk_update(rows, varying)


def _next_due(account_id: int, kinds: Collection[str]) -> float | None:
    waiting = OutboundChange.objects.filter(
        account_id=account_id, kind__in=kinds, status__in=[Status.PENDING, Status.UNKNOWN]
    ).order_by("next_attempt_at")
    if not waiting.exists():
        return None
    if waiting.filter(next_attempt_at__isnull=True).exists():
        return 0.0
    first = waiting.values_list("next_attempt_at", flat=True).first()
    assert first is not None
    return max(0.0, (first - timezone.now()).total_seconds())
