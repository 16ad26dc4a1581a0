"""The worker side of webhook intake, the Kommo boundary's part: claim stored events, read their bodies,
re-fetch what they name, write the mirror and the moves, record each event's outcome. The whole path of a
batch — these steps, then the stakeholders, the gates and the writes back to Kommo — is one function
above the boundary, ``apps.flows.webhooks.webhook_batch``, which :func:`webhook_events_run` is given.

A task for one event claims it together with the other events of the same account that are waiting (a
conditional UPDATE on rows locked with SKIP LOCKED), so a burst of deliveries costs one re-fetch per 250
leads rather than one GET per delivery. Everything written goes through the mirror's upserts and
``stage_change_record``, which are idempotent: a duplicate delivery, a redelivered task after a worker
died, or a reprocess from the admin has no further effect.

Failures: a transient error — Kommo's (``KommoError.permanent`` False) or the database's (a lost
connection, a statement timeout, a serialization failure or deadlock) — leaves the events ``failed`` with
``retry_at`` set, tried again with exponential backoff until ``max_attempts``, then ``dead``. A permanent
one, an unreadable body or an unexpected error leaves them ``failed`` with the traceback, for the admin;
when a batch of several fails that way, each of its events is tried again alone, so that only the one to
blame fails. Kommo's block (``KommoBlocked``: the account's circuit breaker is open) fails nothing: the
events are held, ``received``, until the breaker closes (:func:`webhook_events_release`).

Claims expire: the run holding them renews ``heartbeat_at`` every ``heartbeat`` seconds from a thread of
its own; a claim whose heartbeat is older than ``claim_expires`` (its worker was killed) is claimed again
by the next run and re-queued by the sweeper. A claim that expires on its last attempt is ``dead``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import traceback as tb
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Min, Q, QuerySet
from django.utils import timezone

from apps.kommo import types
from apps.kommo.client import IDS_PER_CALL, LEAD_WITH, KommoClient
from apps.kommo.exceptions import KommoBlocked, KommoError
from apps.kommo.models import CatalogElement, Contact, KommoAccount, Lead, StageChange, WebhookEvent
from apps.kommo.services.mirror import BatchResult as MirrorResult
from apps.kommo.services.mirror import (
    MoveReport,
    catalog_element_mark_deleted,
    catalog_elements_upsert_from_kommo,
    companies_upsert_from_kommo,
    company_mark_deleted,
    contact_mark_deleted,
    contacts_upsert_from_kommo,
    lead_mark_deleted,
    leads_upsert_from_kommo,
    mirror_pks,
    nothing_follows,
    stage_changes_record,
)
from apps.kommo.webhooks.dispatch import Move, Plan, plan_items
from apps.kommo.webhooks.intake import webhook_event_enqueue
from apps.kommo.webhooks.parser import WebhookParseError, parse

logger = logging.getLogger(__name__)

Status = WebhookEvent.Status
T = TypeVar("T")


@dataclass(frozen=True)
class Policy:
    """Processing settings (``KOMMO_WEBHOOK_*``), read when used so that tests can change them."""

    max_attempts: int
    retry_base: float  # seconds before the first retry; doubled for each further attempt
    retry_cap: float
    batch_size: int  # events claimed together
    stuck_after: dt.timedelta  # received, or due for a retry, this long ago: its task was lost
    heartbeat: float  # seconds between renewals of a run's claims
    claim_expires: dt.timedelta  # a claim not renewed for this long is abandoned (its worker died)

    @classmethod
    def current(cls) -> Policy:
        return cls(
            max_attempts=settings.KOMMO_WEBHOOK_MAX_ATTEMPTS,
            retry_base=settings.KOMMO_WEBHOOK_RETRY_BASE_SECONDS,
            retry_cap=settings.KOMMO_WEBHOOK_RETRY_CAP_SECONDS,
            batch_size=settings.KOMMO_WEBHOOK_BATCH_SIZE,
            stuck_after=dt.timedelta(seconds=settings.KOMMO_WEBHOOK_STUCK_AFTER_SECONDS),
            heartbeat=float(settings.KOMMO_WEBHOOK_HEARTBEAT_SECONDS),
            claim_expires=dt.timedelta(seconds=settings.KOMMO_WEBHOOK_CLAIM_EXPIRES_SECONDS),
        )

    def backoff(self, attempts: int) -> float:
        return float(min(self.retry_cap, self.retry_base * 2 ** max(0, attempts - 1)))


@dataclass
class ProcessOutcome:
    """What one run leaves to do: the event to run again, and when, for those left to retry (a run for
    it claims the others that are due by then)."""

    retry: tuple[int, float] | None = None


@dataclass
class BatchResult:
    """What one batch leaves to do: the earliest retry, and whether Kommo blocked the account (``held``:
    the run stops, the events wait for the circuit breaker to close)."""

    retry: tuple[int, float] | None = None
    held: KommoBlocked | None = None


def _expired_claim(cutoff: dt.datetime) -> Q:
    """Claims last renewed before ``cutoff`` (rows claimed before heartbeats existed: claimed before)."""
    return Q(status=Status.PROCESSING) & (
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, claimed_at__lt=cutoff)
    )


def _claimable(now: dt.datetime, policy: Policy) -> Q:
    return (
        Q(status=Status.RECEIVED)
        | Q(status=Status.FAILED, retry_at__lte=now)
        | (_expired_claim(now - policy.claim_expires) & Q(attempts__lt=policy.max_attempts))
    )


def transient(exc: BaseException) -> bool:
    """Whether the same work may succeed later: a transient Kommo error; a database that lost the
    connection, cancelled a statement (timeout) or aborted a transaction (serialization failure, deadlock),
    all of which Django raises as ``OperationalError`` or ``InterfaceError``; or the task's soft time limit
    (a slow Kommo: trying each event alone would only run into the hard limit)."""
    if isinstance(exc, KommoError):
        return not exc.permanent
    return isinstance(exc, OperationalError | InterfaceError | SoftTimeLimitExceeded)


def _text(value: str) -> str:
    """``value`` as a text column can store it (no NUL, no lone surrogate)."""
    return value.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


class Heartbeat:
    """Renews ``heartbeat_at`` of the claims a run holds, every ``every`` seconds, from a thread with a
    database connection of its own, for as long as the run lasts: a claim stops being renewed only when
    its worker is gone (or stuck), and then expires after ``claim_expires``."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._claims: dict[dt.datetime, list[int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=max(self.every, 1.0))

    def hold(self, events: Sequence[WebhookEvent]) -> None:
        if events and events[0].claimed_at is not None:
            with self._lock:
                self._claims[events[0].claimed_at] = [event.pk for event in events]

    def release(self, events: Sequence[WebhookEvent]) -> None:
        if events and events[0].claimed_at is not None:
            with self._lock:
                self._claims.pop(events[0].claimed_at, None)

    def beat(self) -> int:
        """Renews every claim held now; returns the rows renewed."""
        with self._lock:
            claims = list(self._claims.items())
        renewed = 0
        for claimed_at, ids in claims:
            renewed += WebhookEvent.objects.filter(
                pk__in=ids, status=Status.PROCESSING, claimed_at=claimed_at
            ).update(heartbeat_at=timezone.now())
        return renewed

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.every):
                try:
                    self.beat()
                except Exception as exc:  # the database is away: the next beat tries again
                    logger.warning("webhook claim heartbeat failed: %s", exc)
                    connection.close()
        finally:
            connection.close()  # this thread's own connection


def webhook_events_claim(*, event_id: int, policy: Policy) -> list[WebhookEvent]:
    """Claims up to ``batch_size`` claimable events of ``event_id``'s account, oldest first (``event_id``
    itself when it is still waiting). Nothing when none waits: done, or held by another worker."""
    now = timezone.now()
    claimable = WebhookEvent.objects.filter(_claimable(now, policy))
    with transaction.atomic():
        account_id = WebhookEvent.objects.filter(pk=event_id).values_list("account_id", flat=True).first()
        if account_id is None:
            return []
        locked = (
            claimable.filter(account_id=account_id)
            .select_for_update(skip_locked=True)
            .order_by("received_at", "id")
            .values_list("pk", flat=True)
        )
        ids = list(locked[: policy.batch_size])
        if not ids:
            return []
        claimable.filter(pk__in=ids).update(
            status=Status.PROCESSING,
            attempts=F("attempts") + 1,
            claimed_at=now,
            heartbeat_at=now,
            retry_at=None,
        )
    return list(
        WebhookEvent.objects.filter(pk__in=ids, status=Status.PROCESSING, claimed_at=now)
        .select_related("account")
        .order_by("received_at", "id")
    )


@dataclass
class Fetched:
    leads_asked_at: dt.datetime | None = None  # when the first request for the leads left
    leads: dict[int, types.Lead] = field(default_factory=dict)
    contacts: dict[int, types.Contact] = field(default_factory=dict)
    companies: dict[int, types.Company] = field(default_factory=dict)
    elements: dict[int, types.CatalogElement] = field(default_factory=dict)


def webhook_refetch(client: KommoClient, plan: Plan) -> Fetched:
    """Everything the plan names, re-read from Kommo (with the client's ``filter[id][]`` pages of 250
    ids): the copy every write of the batch is made from."""
    return _fetch(client, plan)


def _fetch(client: KommoClient, plan: Plan) -> Fetched:
    fetched = Fetched(leads_asked_at=timezone.now())
    for chunk in _pages(sorted(plan.leads)):
        fetched.leads.update((lead.id, lead) for lead in client.leads_list({"id": chunk}, LEAD_WITH))
    for chunk in _pages(sorted(plan.contacts)):
        fetched.contacts.update((contact.id, contact) for contact in client.contacts_list({"id": chunk}))
    for chunk in _pages(sorted(plan.companies)):
        fetched.companies.update((company.id, company) for company in client.companies_list({"id": chunk}))
    for catalog_id, ids in sorted(plan.elements.items()):
        for chunk in _pages(sorted(ids)):
            elements = client.catalog_elements_list(catalog_id, {"id": chunk})
            fetched.elements.update((element.id, element) for element in elements)
    return fetched


def _pages(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """``items`` in pages of 250: ids per ``filter[id][]`` call, rows per upsert."""
    for start in range(0, len(items), IDS_PER_CALL):
        yield items[start : start + IDS_PER_CALL]


@dataclass
class BatchWork:
    """A claimed batch whose bodies were read: the events with something to do (the others are finished
    already: unreadable, or nothing the portal handles), what they ask for, and when each move arrived."""

    account: KommoAccount
    events: list[WebhookEvent]
    plan: Plan
    moves_at: list[dt.datetime]  # when each of plan.moves was received

    @property
    def reported_by(self) -> dt.datetime:
        """Every move of the batch reached the portal no later than this, and the re-fetch left after
        it: a deal fetched at or after it is mirrored as Kommo had it after its move."""
        return max(event.received_at for event in self.events)

    @property
    def received_from(self) -> dt.datetime:
        """When the first delivery of the batch arrived."""
        return min(event.received_at for event in self.events)


def webhook_batch_read(events: Sequence[WebhookEvent]) -> BatchWork | None:
    """Parses each claimed body into a plan (what to re-fetch, which moves and touches it reports) and
    merges the plans. An unreadable body fails its event alone; a body the portal has nothing to do with is
    ``ignored``. None when no event is left with something to do."""
    plan = Plan()
    moves_at: list[dt.datetime] = []
    working: list[WebhookEvent] = []
    for event in events:
        try:
            body = parse(bytes(event.body), event.content_type)
            event_plan, handled, unknown = plan_items(body.items, received_at=event.received_at)
        except WebhookParseError as exc:
            _finish(event, Status.FAILED, error=f"unreadable body: {exc}", trace=tb.format_exc())
            continue
        except Exception as exc:  # a bug this body alone meets: it fails, visibly; the others go on
            logger.exception("webhook event %s: reading its body failed", event.pk)
            _finish(event, Status.FAILED, error=f"{type(exc).__name__}: {exc}", trace=tb.format_exc())
            continue
        note = f"not handled: {', '.join(unknown)}" if unknown else ""
        if not handled:
            _finish(event, Status.IGNORED, error=note)
            continue
        moves_at += [event.received_at] * len(event_plan.moves)
        plan.merge(event_plan)
        event.error = note
        working.append(event)
    if not working:
        return None
    return BatchWork(account=events[0].account, events=working, plan=plan, moves_at=moves_at)


def webhook_mirror_write(account: KommoAccount, plan: Plan, fetched: Fetched) -> MirrorResult:
    """Writes the re-fetched rows into the mirror — upserts first (a new lead must exist before its
    move), then the deletions Kommo confirms (the entity is no longer listed) — with nothing following
    them: the result names the rows that changed and the moves the upsert inferred, for the caller.

    The upsert infers no move for a deal whose moves the batch reports: two moves of one deal in a batch
    (61→62, 62→63) would otherwise add a third, 61→63, that never happened."""
    result = MirrorResult()
    reported = {move.lead_id for move in plan.moves}
    for leads in _pages(list(fetched.leads.values())):
        result.add(
            leads_upsert_from_kommo(
                account=account,
                leads=leads,
                source=StageChange.Source.WEBHOOK,
                moves_reported_for=reported,
                fetched_at=fetched.leads_asked_at,
                follow=nothing_follows,
            )
        )
    for contacts in _pages(list(fetched.contacts.values())):
        result.add(contacts_upsert_from_kommo(account=account, contacts=contacts, follow=nothing_follows))
    for companies in _pages(list(fetched.companies.values())):
        result.add(companies_upsert_from_kommo(account=account, companies=companies))
    for elements in _pages(list(fetched.elements.values())):
        written = catalog_elements_upsert_from_kommo(
            account=account, elements=elements, follow=nothing_follows
        )
        result.add(written)
    for lead_id in sorted(plan.deleted_leads - fetched.leads.keys()):
        if lead_mark_deleted(account=account, kommo_id=lead_id, follow=nothing_follows):
            result.lead_ids += mirror_pks(Lead, account, lead_id)
    for contact_id in sorted(plan.deleted_contacts - fetched.contacts.keys()):
        if contact_mark_deleted(account=account, kommo_id=contact_id, follow=nothing_follows):
            result.contact_ids += mirror_pks(Contact, account, contact_id)
    for company_id in sorted(plan.deleted_companies - fetched.companies.keys()):
        company_mark_deleted(account=account, kommo_id=company_id)
    for ids in plan.deleted_elements.values():
        for element_id in sorted(ids - fetched.elements.keys()):
            if catalog_element_mark_deleted(account=account, kommo_id=element_id, follow=nothing_follows):
                result.catalog_element_ids += mirror_pks(CatalogElement, account, element_id)
    return result


@dataclass(frozen=True)
class ReceivedMove:
    """A move recorded for the first time, with when its report reached the portal."""

    stage_change: StageChange
    received_at: dt.datetime


def webhook_moves_record(work: BatchWork, fetched: Fetched) -> list[ReceivedMove]:
    """Records the moves the deliveries report, after the upserts (which create the new deals), with
    nothing following them, all in one ``stage_changes_record`` (in the order reported: each is matched
    against those recorded before it). Returns the moves recorded for the first time (a report of a known
    move enriches its row and is not returned)."""
    account, plan = work.account, work.plan
    if not plan.moves:
        return []
    moved = Lead.objects.filter(account=account, kommo_id__in={move.lead_id for move in plan.moves})
    deals = {lead.kommo_id: lead for lead in moved}
    last = {move.lead_id: index for index, move in enumerate(plan.moves)}
    reports: list[tuple[MoveReport, dt.datetime]] = []
    for index, (move, received_at) in enumerate(zip(plan.moves, work.moves_at, strict=True)):
        lead = deals.get(move.lead_id)
        if lead is None:  # Kommo no longer has it: nothing to attach the move to
            continue
        latest = last[move.lead_id] == index
        reports.append((_move_report(lead, move, fetched, received_at, last=latest), received_at))
    recorded = stage_changes_record(
        account=account,
        reports=[report for report, _ in reports],
        source=StageChange.Source.WEBHOOK,
        follow=nothing_follows,
    )
    return [
        ReceivedMove(change, received_at)
        for (change, created), (_, received_at) in zip(recorded, reports, strict=True)
        if created
    ]


def _move_report(
    lead: Lead, move: Move, fetched: Fetched, received_at: dt.datetime, *, last: bool
) -> MoveReport:
    """One reported move. ``last``: no later move of the deal in the batch; when the re-fetch (which
    left after the delivery arrived) found the deal at the move's to-stage, the move is the deal's latest
    as of the re-fetch (``latest_as_of``), which tells it from an earlier identical move the deal was
    moved back from within the same second."""
    current = fetched.leads.get(move.lead_id)
    arrived = current is not None and (current.status_id, current.pipeline_id) == (
        move.to_status_id,
        move.to_pipeline_id or current.pipeline_id,
    )
    at, exact = move.at, True
    if at is None:  # a Digital Pipeline hook: the lead's updated_at bounds the move, if it is still there
        still_there = current is not None and current.status_id == move.to_status_id
        at = current.updated_at if still_there and current and current.updated_at else received_at
        exact = False
    return MoveReport(
        lead=lead,
        from_status_id=move.from_status_id,
        to_status_id=move.to_status_id,
        from_pipeline_id=move.from_pipeline_id,
        to_pipeline_id=move.to_pipeline_id,
        at=at,
        moved_by_kommo_user_id=move.moved_by,
        at_is_exact=exact,
        latest_as_of=fetched.leads_asked_at if exact and last and arrived else None,
    )


def webhook_batch_processed(work: BatchWork) -> None:
    """Marks the batch's events processed (inside the transaction of its writes): one UPDATE for the
    events claimed together with the same note (as a rule, the whole batch), not one per event."""
    groups: dict[tuple[dt.datetime | None, str], list[int]] = {}
    for event in work.events:
        groups.setdefault((event.claimed_at, event.error), []).append(event.pk)
    now = timezone.now()
    for (claimed_at, error), ids in groups.items():
        WebhookEvent.objects.filter(pk__in=ids, status=Status.PROCESSING, claimed_at=claimed_at).update(
            status=Status.PROCESSED, error=_text(error), traceback="", processed_at=now
        )


def _finish(event: WebhookEvent, status: str, *, error: str = "", trace: str = "") -> None:
    """Sets the outcome of a claimed event (only while this run still holds the claim)."""
    now = timezone.now()
    WebhookEvent.objects.filter(pk=event.pk, status=Status.PROCESSING, claimed_at=event.claimed_at).update(
        status=status,
        error=_text(error),
        traceback=_text(trace),
        processed_at=now if status != Status.FAILED else None,
    )


def _hold(events: Sequence[WebhookEvent], exc: KommoBlocked) -> None:
    """Gives the claims back while Kommo blocks the account: ``received`` again, the attempt not
    counted, the reason shown; :func:`webhook_events_release` sends them on when the breaker closes."""
    for claimed_at in {event.claimed_at for event in events}:
        WebhookEvent.objects.filter(
            pk__in=[event.pk for event in events if event.claimed_at == claimed_at],
            status=Status.PROCESSING,
            claimed_at=claimed_at,
        ).update(
            status=Status.RECEIVED,
            attempts=F("attempts") - 1,
            error=_text(f"held while Kommo blocks the account: {exc}"),
            traceback="",
            claimed_at=None,
            heartbeat_at=None,
            retry_at=None,
        )


def _fail(events: Sequence[WebhookEvent], exc: BaseException, policy: Policy) -> BatchResult:
    """Marks ``events`` failed after ``exc``: retryable (with a time) when it is transient and attempts are
    left, dead when they are not; held when Kommo blocks the account. Returns the earliest retry."""
    if isinstance(exc, KommoBlocked):
        _hold(events, exc)
        return BatchResult(held=exc)
    trace = "".join(tb.format_exception(exc))
    retryable = transient(exc)
    retry: tuple[int, float] | None = None
    for event in events:
        if not retryable:
            _finish(event, Status.FAILED, error=f"{type(exc).__name__}: {exc}", trace=trace)
            continue
        if event.attempts >= policy.max_attempts:
            _finish(event, Status.DEAD, error=f"gave up after {event.attempts} attempts: {exc}", trace=trace)
            continue
        delay = policy.backoff(event.attempts)
        WebhookEvent.objects.filter(
            pk=event.pk, status=Status.PROCESSING, claimed_at=event.claimed_at
        ).update(
            status=Status.FAILED,
            error=_text(f"attempt {event.attempts} failed, retrying in {delay:g} s: {exc}"),
            traceback=_text(trace),
            retry_at=timezone.now() + dt.timedelta(seconds=delay),
        )
        if retry is None or delay < retry[1]:
            retry = (event.pk, delay)
    return BatchResult(retry=retry)


def _earliest(a: tuple[int, float] | None, b: tuple[int, float] | None) -> tuple[int, float] | None:
    if a is None or (b is not None and b[1] < a[1]):
        return b
    return a


# One claimed batch, from its bodies to its writes: ``apps.flows.webhooks.webhook_batch``. It is given to
# the run as a parameter (the run is the Kommo boundary's; the flow calls the apps above it).
BatchStep = Callable[[list[WebhookEvent], Policy, KommoClient], BatchResult]


def webhook_events_run(*, event_id: int, step: BatchStep) -> ProcessOutcome:
    """Processes the events waiting for ``event_id``'s account, a batch at a time, each claimed batch
    through ``step``, until none is left or a batch must be retried (see the module notes)."""
    policy = Policy.current()
    outcome = ProcessOutcome()
    account = KommoAccount.objects.filter(webhook_events__pk=event_id).first()
    if account is None:  # the event is gone (pruned): nothing to claim
        return outcome
    client = KommoClient(account)
    with Heartbeat(policy.heartbeat) as heartbeat:
        while True:
            if KommoAccount.objects.filter(pk=account.pk, blocked_since__isnull=False).exists():
                return outcome  # held until the circuit breaker closes (webhook_events_release)
            # The batch's re-fetch could not go out before a slot is free: deliveries that arrive
            # meanwhile join it instead of waiting for the next one.
            client.wait_for_free_slot()
            events = webhook_events_claim(event_id=event_id, policy=policy)
            if events:
                heartbeat.hold(events)
                result = step(events, policy, client)
                heartbeat.release(events)
                outcome.retry = result.retry
                if result.held is not None:
                    return outcome
            if len(events) < policy.batch_size or outcome.retry is not None:
                return outcome


def webhook_batch_failed(
    work: BatchWork, exc: Exception, *, policy: Policy, client: KommoClient, step: BatchStep
) -> BatchResult:
    """Records a failure of the batch on its events (none escapes to the worker): retried when it is
    transient, held when Kommo blocks the account; a batch of several that failed for good is tried
    again event by event through ``step`` (one of them may be to blame: only what fails alone fails)."""
    logger.warning("webhook events %s failed: %s", [e.pk for e in work.events], exc)
    if len(work.events) > 1 and not transient(exc) and not isinstance(exc, KommoBlocked):
        return _one_by_one(work.events, policy, client, step)
    return _fail(work.events, exc, policy)


def _one_by_one(
    events: list[WebhookEvent], policy: Policy, client: KommoClient, step: BatchStep
) -> BatchResult:
    """A batch that failed for good, each of its events tried again alone (still under the same claim):
    only what fails alone is failed, the others are processed."""
    result = BatchResult()
    for index, event in enumerate(events):
        single = step([event], policy, client)
        result.retry = _earliest(result.retry, single.retry)
        if single.held is not None:
            _hold(events[index + 1 :], single.held)
            result.held = single.held
            break
    return result


def webhook_events_sweep(*, older_than: dt.timedelta | None = None) -> list[int]:
    """Re-queues events nobody is working on: received but never published (one task per account, see
    :func:`webhook_events_sweep_unqueued`), claimed by a worker that died (its claim expired), or due for
    a retry whose task was lost. A claim that expired on the last attempt is ``dead`` instead: the body
    keeps killing its worker. Events of accounts Kommo blocks are left alone (held until the breaker
    closes). Returns the ids tasks were sent for."""
    policy = Policy.current()
    now = timezone.now()
    unqueued = webhook_events_sweep_unqueued(now=now, older_than=older_than)
    cutoff = now - (older_than if older_than is not None else policy.stuck_after)
    expired = _expired_claim(now - (older_than if older_than is not None else policy.claim_expires))
    WebhookEvent.objects.filter(expired, attempts__gte=policy.max_attempts).update(
        status=Status.DEAD,
        error=f"its worker died or was stopped on each of {policy.max_attempts} attempts",
        processed_at=now,
    )
    stuck = WebhookEvent.objects.filter(expired | Q(status=Status.FAILED, retry_at__lt=cutoff)).exclude(
        account__in=_blocked_accounts()
    )
    ids = list(stuck.order_by("received_at").values_list("pk", flat=True)[:10_000])
    WebhookEvent.objects.filter(expired, pk__in=ids).update(status=Status.RECEIVED)
    for event_id in ids:
        webhook_event_enqueue(event_id=event_id)
    return unqueued + ids


def _blocked_accounts() -> QuerySet[KommoAccount]:
    """Accounts whose circuit breaker is open: their events are held on purpose, not lost."""
    return KommoAccount.objects.filter(blocked_since__isnull=False)


def webhook_events_sweep_unqueued(
    *, now: dt.datetime | None = None, older_than: dt.timedelta | None = None
) -> list[int]:
    """One task per account whose events wait ``received`` for longer than
    ``KOMMO_WEBHOOK_UNQUEUED_AFTER_SECONDS``: their publish was lost (the broker was down when the request
    committed them). A request publishes within ``KOMMO_WEBHOOK_ENQUEUE_FLOOD_WINDOW_MS`` at most, so a
    short wait tells them apart; one task per account is enough, since it processes every waiting event of
    its account.
    Returns the events the tasks were sent for (each account's oldest)."""
    now = now or timezone.now()
    if older_than is None:
        older_than = dt.timedelta(seconds=settings.KOMMO_WEBHOOK_UNQUEUED_AFTER_SECONDS)
    cutoff = now - older_than
    waiting = (
        WebhookEvent.objects.filter(status=Status.RECEIVED, received_at__lt=cutoff)
        .exclude(account__in=_blocked_accounts())
        .values("account_id")
        .annotate(oldest=Min("pk"))
        .order_by("oldest")
    )
    ids = [row["oldest"] for row in waiting]
    for event_id in ids:
        webhook_event_enqueue(event_id=event_id)
    return ids


def webhook_events_release(*, account_id: int) -> int | None:
    """Sends on the events held while Kommo blocked the account (the circuit breaker has just closed):
    one task, which processes every waiting event of the account. Returns the event it was queued for."""
    waiting = (
        WebhookEvent.objects.filter(account_id=account_id)
        .filter(Q(status=Status.RECEIVED) | Q(status=Status.FAILED, retry_at__lte=timezone.now()))
        .order_by("received_at", "id")
        .values_list("pk", flat=True)
        .first()
    )
    if waiting is not None:
        webhook_event_enqueue(event_id=waiting)
    return waiting


def webhook_events_reprocess(*, event_ids: Iterable[int]) -> int:
    """Puts events back to ``received`` with fresh attempts and enqueues them (the admin's action).
    Rejected events are left alone: they name another account."""
    with transaction.atomic():
        events = WebhookEvent.objects.filter(pk__in=list(event_ids)).exclude(
            status__in=[Status.REJECTED, Status.PROCESSING]
        )
        ids = list(events.select_for_update().values_list("pk", flat=True))
        WebhookEvent.objects.filter(pk__in=ids).update(
            status=Status.RECEIVED, attempts=0, error="", traceback="", retry_at=None
        )
        for event_id in ids:
            transaction.on_commit(partial(webhook_event_enqueue, event_id=event_id))
    return len(ids)


def webhook_backlog(*, account_id: int) -> int:
    """How many of the account's webhook deliveries are not processed yet (received or being processed):
    Kommo has told the portal of more than the mirror holds (the outbound plan sends tasks and notes once
    none waits)."""
    return WebhookEvent.objects.filter(
        account_id=account_id, status__in=[Status.RECEIVED, Status.PROCESSING]
    ).count()


# The section of a delivery that reports deals' stage moves (general webhooks and Digital Pipeline hooks).
MOVE_SECTION = "leads[status]"


def webhook_moves_backlog(*, account_id: int) -> int:
    """How many of the account's deliveries that report stage moves (``leads[status]``) are not processed
    yet: Kommo has told the portal of moves the mirror does not hold yet (the outbound plan holds moves
    back for company when they are many). The other deliveries report no move the gates could judge, and
    at a steady stream of blocked moves most of them are the portal's own writes coming back — each
    block's task and note as ``task[add]`` and ``leads[note]``, and Kommo reports every move twice, as
    ``leads[status]`` and ``leads[update]`` — so that counting them made a steady stream look like a
    burst."""
    return WebhookEvent.objects.filter(
        account_id=account_id, status__in=[Status.RECEIVED, Status.PROCESSING], events__contains=MOVE_SECTION
    ).count()


def webhook_events_prune(*, days: int) -> int:
    """Deletes processed and ignored events received more than ``days`` days ago; failed, dead and
    rejected ones stay for inspection. Returns how many were deleted."""
    cutoff = timezone.now() - dt.timedelta(days=days)
    deleted, _ = WebhookEvent.objects.filter(
        status__in=[Status.PROCESSED, Status.IGNORED], received_at__lt=cutoff
    ).delete()
    return int(deleted)
