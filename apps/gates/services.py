"""Gate evaluation and enforcement.

Every new stage change with an active rule on its pipeline gets a :class:`GateEvaluation` (in the
transaction that recorded the move). The worker takes all pending evaluations of an account together and
decides each on fresh state: the mirror's copy of the deal when webhook processing re-fetched it after the
move was reported (``GateEvaluation.fresh_after`` ≤ ``Lead.fetched_at``), otherwise a re-read from Kommo
(one batched call for all the others). It decides with :mod:`apps.gates.semantics`, and in one transaction
per move writes the :class:`GateDecision` rows and — for a block in enforce mode — the outbound changes that
move the deal back, task its responsible manager and explain it in a note; :func:`gates_enforce` then
sends what the outbound plan says is due.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from apps.gates import semantics
from apps.gates.models import GateCondition, GateDecision, GateEvaluation, GateRule
from apps.kommo.client import KommoClient
from apps.kommo.exceptions import KommoError
from apps.kommo.models import KommoAccount, Pipeline, StageChange, Status
from apps.kommo.models.outbound import OutboundChange
from apps.kommo.services.outbound import (
    STUCK_SENDING,
    FlushResult,
    Intended,
    outbound_changes_enqueue,
    outbound_changes_flush,
    outbound_move_echoes_claim,
)
from apps.kommo.types import Lead as KommoLead
from apps.stakeholders.models import Role, Stakeholder
from apps.stakeholders.selectors import StakeholderState, stakeholders_for_leads

logger = logging.getLogger(__name__)

Outcome = GateDecision.Outcome

# Moves reported by other sources than webhook processing (sync, events) are evaluated after this short
# window, so that those reported together cost one fresh read; webhook processing's flow evaluates its own
# moves as soon as its batch is committed (apps.flows.webhooks).
BATCH_WINDOW_SECONDS = 0.2
CLAIM_LIMIT = 250  # one page of GET /leads?filter[id][]=…
MAX_ATTEMPTS = 5
STUCK_RUNNING = dt.timedelta(minutes=5)


# -- intake of moves -------------------------------------------------------------------------------------


def stage_change_gate_intake(
    *,
    stage_change: StageChange,
    fresh_after: dt.datetime | None = None,
    received_at: dt.datetime | None = None,
) -> GateEvaluation | None:
    """What the gates do when a move is recorded (called inside the recording transaction).

    The portal's own move back is recognised — as a ``gate`` row, or as the echo of a lead_status change
    it sent recently — and marked ``source=gate``: it is not a manager's move. Any other move on a
    pipeline with an active rule is queued for evaluation. ``fresh_after``: the caller re-fetched the deals
    after the move was reported (webhook processing), so the move may be decided on the mirror's copy of
    the deal when that copy was fetched at or after this time. ``received_at``: when the report of the
    move reached the portal (the decision's latency counts from it); by default, when it was recorded.
    Returns the queued evaluation, if any. Several moves at once: :func:`stage_changes_gate_intake`."""
    return stage_changes_gate_intake(moves=[(stage_change, received_at)], fresh_after=fresh_after)[0]


def stage_changes_gate_intake(
    *,
    moves: Sequence[tuple[StageChange, dt.datetime | None]],
    fresh_after: dt.datetime | None = None,
) -> list[GateEvaluation | None]:
    """:func:`stage_change_gate_intake` for the moves one batch recorded, each with when it was received,
    at a cost that does not grow per move: the echoes claimed in one read and one UPDATE, the guarded
    pipelines read once, the evaluations written in one INSERT. Returns each move's evaluation, or None."""
    result: list[GateEvaluation | None] = [None] * len(moves)
    todo = [index for index, (change, _) in enumerate(moves) if change.source != StageChange.Source.GATE]
    for account_id in sorted({moves[index][0].account_id for index in todo}):
        mine = [index for index in todo if moves[index][0].account_id == account_id]
        echoes = outbound_move_echoes_claim(
            account_id=account_id,
            moves=[
                (
                    moves[index][0].lead.kommo_id,
                    moves[index][0].to_status_kommo_id,
                    moves[index][0].to_pipeline_kommo_id,
                )
                for index in mine
            ],
        )
        echoed = [moves[index][0] for index, echo in zip(mine, echoes, strict=True) if echo is not None]
        _mark_echoes(echoed)
        guarded = set(
            GateRule.objects.filter(account_id=account_id, is_active=True).values_list(
                "pipeline__kommo_id", flat=True
            )
        )
        queued = [
            index
            for index, echo in zip(mine, echoes, strict=True)
            if echo is None
            and (moves[index][0].to_pipeline_kommo_id or moves[index][0].lead.pipeline_kommo_id) in guarded
        ]
        for index, evaluation in zip(queued, _evaluations_queue(queued, moves, fresh_after), strict=True):
            result[index] = evaluation
    return result


def _mark_echoes(changes: Sequence[StageChange]) -> None:
    """The reported moves that are the portal's own move back: ``source=gate`` (one UPDATE per set of
    sources they had, as a rule one)."""
    by_sources: dict[tuple[str, ...], list[StageChange]] = {}
    for change in changes:
        by_sources.setdefault(tuple(change.sources), []).append(change)
    for before, rows in by_sources.items():
        sources = [*before, StageChange.Source.GATE]
        StageChange.objects.filter(pk__in=[row.pk for row in rows]).update(
            source=StageChange.Source.GATE, sources=sources
        )
        for row in rows:
            row.source, row.sources = StageChange.Source.GATE, list(sources)


def _evaluations_queue(
    indexes: Sequence[int],
    moves: Sequence[tuple[StageChange, dt.datetime | None]],
    fresh_after: dt.datetime | None,
) -> list[GateEvaluation]:
    """The pending evaluation of each of these moves: the existing one, or a new one (one INSERT)."""
    changes = [moves[index][0] for index in indexes]
    existing = {
        evaluation.stage_change_id: evaluation
        for evaluation in GateEvaluation.objects.filter(stage_change__in=[change.pk for change in changes])
    }
    new = [
        GateEvaluation(
            stage_change=change,
            account_id=change.account_id,
            received_at=moves[index][1] or change.created,
            fresh_after=fresh_after,
        )
        for index, change in zip(indexes, changes, strict=True)
        if change.pk not in existing
    ]
    if new:
        try:
            with transaction.atomic():
                created = GateEvaluation.objects.bulk_create(new)
        except IntegrityError:  # queued meanwhile by another transaction: one by one
            created = [
                GateEvaluation.objects.get_or_create(
                    stage_change=row.stage_change,
                    defaults={
                        "account_id": row.account_id,
                        "received_at": row.received_at,
                        "fresh_after": row.fresh_after,
                    },
                )[0]
                for row in new
            ]
        existing.update((evaluation.stage_change_id, evaluation) for evaluation in created)
    return [existing[change.pk] for change in changes]


def gate_evaluation_starts_batch(*, evaluation: GateEvaluation) -> bool:
    """Whether this evaluation must schedule a run: it does when no older one of its account is still
    pending (that one's run, not started yet, will take this one too)."""
    return not GateEvaluation.objects.filter(
        account_id=evaluation.account_id, status=GateEvaluation.Status.PENDING, id__lt=evaluation.pk
    ).exists()


# -- evaluation ------------------------------------------------------------------------------------------


@dataclass
class EvaluationRun:
    evaluated: int = 0
    decisions: int = 0
    blocked: int = 0
    outbound: int = 0
    from_mirror: int = 0  # moves decided on the mirror's copy of the deal (fetched after the report)
    kommo_reads: int = 0  # moves whose deal was re-read from Kommo
    retry_in: float | None = None  # set when the fresh read failed transiently or more is pending
    # After deciding: how many of the account's moves still wait for a decision (pending, or claimed by
    # another run), which tells the outbound plan whether a burst is over; None when nothing was decided.
    undecided: int | None = None


def _claim(account_id: int) -> list[GateEvaluation]:
    now = timezone.now()
    stuck = Q(status=GateEvaluation.Status.RUNNING, claimed_at__lt=now - STUCK_RUNNING)
    with transaction.atomic():
        rows = list(
            GateEvaluation.objects.select_for_update(skip_locked=True)
            .filter(Q(status=GateEvaluation.Status.PENDING) | stuck, account_id=account_id)
            .order_by("id")[:CLAIM_LIMIT]
        )
        for row in rows:
            row.status, row.claimed_at, row.attempts = GateEvaluation.Status.RUNNING, now, row.attempts + 1
        GateEvaluation.objects.filter(pk__in=[row.pk for row in rows]).update(
            status=GateEvaluation.Status.RUNNING, claimed_at=now, attempts=F("attempts") + 1
        )
    return rows


def stage_from_status(status: Status) -> semantics.Stage:
    """A mirrored stage as :mod:`apps.gates.semantics` sees it: the one place that makes a
    :class:`semantics.Stage` of a :class:`Status` (load ``pipeline`` with it to spare a query)."""
    return semantics.Stage(
        kommo_id=status.kommo_id, pipeline_kommo_id=status.pipeline.kommo_id, sort=status.sort
    )


class _Stages:
    """The account's stages by (pipeline Kommo id, status Kommo id)."""

    def __init__(self, account_id: int) -> None:
        self.rows = {
            (status.pipeline.kommo_id, status.kommo_id): status
            for status in Status.objects.filter(account_id=account_id).select_related("pipeline")
        }

    def get(self, pipeline_kommo_id: int | None, status_kommo_id: int | None) -> Status | None:
        if pipeline_kommo_id is None or status_kommo_id is None:
            return None
        return self.rows.get((pipeline_kommo_id, status_kommo_id))

    def name(self, pipeline_kommo_id: int | None, status_kommo_id: int | None) -> str:
        status = self.get(pipeline_kommo_id, status_kommo_id)
        if status is not None:
            return status.name
        return "—" if status_kommo_id is None else f"stage {status_kommo_id}"

    def stage(self, pipeline_kommo_id: int | None, status_kommo_id: int | None) -> semantics.Stage | None:
        """The stage as the semantics see it; None when the mirror does not know it."""
        status = self.get(pipeline_kommo_id, status_kommo_id)
        return stage_from_status(status) if status is not None else None


def _fresh(lead: KommoLead) -> semantics.FreshLead:
    return semantics.FreshLead(
        status_kommo_id=lead.status_id,
        pipeline_kommo_id=lead.pipeline_id,
        updated_at=lead.updated_at,
        updated_by=lead.updated_by,
        responsible_user_id=lead.responsible_user_id,
        tags=tuple(tag.name for tag in lead.tags),
        is_deleted=lead.is_deleted,
    )


def _fresh_from_mirror(evaluation: GateEvaluation) -> semantics.FreshLead | None:
    """The deal as the mirror has it, when that copy was fetched from Kommo at or after the move was
    reported (webhook processing's own re-fetch); None when the deal must be re-read."""
    lead = evaluation.stage_change.lead
    if evaluation.fresh_after is None or lead.fetched_at is None or lead.fetched_at < evaluation.fresh_after:
        return None
    data = lead.payload()
    if data is None:
        return None
    fresh = _fresh(data)
    if lead.is_deleted and not fresh.is_deleted:
        fresh = dataclasses.replace(fresh, is_deleted=True)
    return fresh


def _fresh_dict(
    fresh: semantics.FreshLead | None, read_from: str, fetched_at: dt.datetime | None
) -> dict[str, Any]:
    where = {"read": read_from, "fetched_at": fetched_at.isoformat() if fetched_at else None}
    if fresh is None:
        return {"found": False, **where}
    return {
        **where,
        "found": True,
        "status_id": fresh.status_kommo_id,
        "pipeline_id": fresh.pipeline_kommo_id,
        "updated_at": fresh.updated_at.isoformat() if fresh.updated_at else None,
        "updated_by": fresh.updated_by,
        "responsible_user_id": fresh.responsible_user_id,
        "tags": list(fresh.tags),
        "is_deleted": fresh.is_deleted,
    }


def stakeholder_views(rows: Iterable[Stakeholder]) -> list[semantics.StakeholderView]:
    return [
        semantics.StakeholderView(
            name=row.name,
            role_id=row.role_id,
            role_label=row.role.label if row.role is not None else "",
            approval=row.approval_status,
            approval_decided_at=row.approval_decided_at,
            approval_valid_days=row.role.approval_valid_days if row.role is not None else None,
            last_touch=row.last_touch,
            objection_open=row.objection_open,
            objection=row.objection,
            objection_weight=row.objection_weight,
            objection_raised_at=row.objection_raised_at,
        )
        for row in rows
    ]


def stakeholder_views_as_of(
    states: Iterable[StakeholderState], roles: Mapping[int, Role]
) -> list[semantics.StakeholderView]:
    """The people of a deal as the history says they were (``stakeholder_state_as_of``), as conditions see
    them; ``roles`` names the roles and gives their approvals' expiry."""
    views = []
    for state in states:
        role = roles.get(state.role_id) if state.role_id is not None else None
        views.append(
            semantics.StakeholderView(
                name=state.name,
                role_id=state.role_id,
                role_label=role.label if role is not None else "",
                approval=state.approval_status,
                approval_decided_at=state.approval_decided_at,
                approval_valid_days=role.approval_valid_days if role is not None else None,
                last_touch=state.last_touch,
                objection_open=state.objection_open,
                objection=state.objection,
                objection_weight=state.objection_weight,
                objection_raised_at=state.objection_raised_at,
            )
        )
    return views


def _later_moves(changes: Sequence[StageChange]) -> set[int]:
    """The stage changes (pks) of which a later move of the same deal is already recorded."""
    latest: dict[int, tuple[dt.datetime, int]] = {}
    for lead_id, at, pk in StageChange.objects.filter(lead_id__in={c.lead_id for c in changes}).values_list(
        "lead_id", "at", "pk"
    ):
        if lead_id not in latest or (at, pk) > latest[lead_id]:
            latest[lead_id] = (at, pk)
    return {
        change.pk
        for change in changes
        if latest.get(change.lead_id, (change.at, change.pk)) > (change.at, change.pk)
    }


@dataclass
class _Verdict:
    rule: GateRule
    outcome: str
    reasons: list[str]
    target: semantics.Stage | None = None


class _Evaluator:
    def __init__(self, stages: _Stages, rules: Sequence[GateRule]) -> None:
        self.stages = stages
        self.rules = rules
        self.exempt = {rule.pk: [user.kommo_id for user in rule.exempt_users.all()] for rule in rules}

    def crossed(self, change: StageChange) -> list[GateRule]:
        """The active rules whose gate this move crosses."""
        to_pipeline = change.to_pipeline_kommo_id or change.lead.pipeline_kommo_id
        target = self.stages.stage(to_pipeline, change.to_status_kommo_id)
        origin = self.stages.stage(change.from_pipeline_kommo_id, change.from_status_kommo_id)
        if target is None:
            return []
        found = []
        for rule in self.rules:
            gated = stage_from_status(rule.gated_stage)
            if semantics.gate_crossed(gated=gated, from_stage=origin, to_stage=target):
                found.append(rule)
        return found

    def verdicts(
        self,
        change: StageChange,
        rules: Sequence[GateRule],
        fresh: semantics.FreshLead,
        people: Sequence[semantics.StakeholderView],
    ) -> list[_Verdict]:
        verdicts = []
        origin = self.stages.stage(change.from_pipeline_kommo_id, change.from_status_kommo_id)
        for rule in rules:
            exempt = semantics.exemption(
                exempt_user_ids=self.exempt[rule.pk],
                override_tag=rule.override_tag,
                moved_by=change.moved_by_kommo_user_id,
                updated_by=fresh.updated_by,
                tags=fresh.tags,
            )
            if exempt is not None:
                verdicts.append(_Verdict(rule, Outcome.EXEMPT, [exempt]))
                continue
            conditions = [condition.as_semantics() for condition in rule.conditions.all()]
            failures = semantics.conditions_failures(
                conditions=conditions, stakeholders=people, now=timezone.now()
            )
            if not failures:
                verdicts.append(_Verdict(rule, Outcome.ALLOWED, []))
                continue
            if rule.mode == GateRule.Mode.DRY_RUN:
                verdicts.append(_Verdict(rule, Outcome.WOULD_BLOCK, failures))
                continue
            assert origin is not None  # a crossed gate has a known origin
            back = rule.move_back_stage
            target = semantics.move_back_target(
                gated=stage_from_status(rule.gated_stage),
                from_stage=origin,
                configured=stage_from_status(back) if back is not None else None,
            )
            verdicts.append(_Verdict(rule, Outcome.BLOCKED, failures, target))
        return verdicts


def _active_rules(account_id: int) -> list[GateRule]:
    return list(
        GateRule.objects.filter(account_id=account_id, is_active=True)
        .select_related("pipeline", "gated_stage__pipeline", "move_back_stage__pipeline")
        .prefetch_related("conditions__role", "exempt_users")
    )


def gate_evaluations_run(*, account_id: int, client: KommoClient | None = None) -> EvaluationRun:
    """Evaluate every pending move of one account: one fresh read of their deals, then a decision per
    crossed rule and, for blocks in enforce mode, the outbound changes — each move in its own
    transaction. A transient failure of the read puts the batch back and asks for a retry."""
    run = EvaluationRun()
    claimed = _claim(account_id)
    if not claimed:
        return run
    evaluations = list(
        GateEvaluation.objects.filter(pk__in=[row.pk for row in claimed])
        .select_related("stage_change__lead", "stage_change__account")
        .order_by("id")
    )
    stages = _Stages(account_id)
    evaluator = _Evaluator(stages, _active_rules(account_id))
    crossing = {evaluation.pk: evaluator.crossed(evaluation.stage_change) for evaluation in evaluations}
    to_decide = [evaluation for evaluation in evaluations if crossing[evaluation.pk]]
    _done([evaluation for evaluation in evaluations if not crossing[evaluation.pk]])
    if not to_decide:
        return run

    # Fresh state: the mirror's copy where webhook processing re-fetched the deal after the report, one
    # batched re-read from Kommo for the others.
    fresh: dict[int, tuple[semantics.FreshLead | None, str, dt.datetime | None]] = {}
    to_read: list[GateEvaluation] = []
    for evaluation in to_decide:
        mirrored = _fresh_from_mirror(evaluation)
        if mirrored is None:
            to_read.append(evaluation)
        else:
            fresh[evaluation.pk] = (mirrored, "mirror", evaluation.stage_change.lead.fetched_at)
    if to_read:
        lead_ids = sorted({evaluation.stage_change.lead.kommo_id for evaluation in to_read})
        asked_at = timezone.now()
        try:
            client = client or KommoClient(to_read[0].stage_change.account)
            read = {lead.id: lead for lead in client.leads_list({"id": lead_ids})}
        except KommoError as error:
            give_up = error.permanent or min(evaluation.attempts for evaluation in to_read) >= MAX_ATTEMPTS
            if not give_up:
                _release(to_read, str(error))
                run.retry_in = float(
                    getattr(error, "retry_after", None) or 2 ** min(e.attempts for e in to_read)
                )
            else:
                for evaluation in to_read:
                    _decide_error(
                        evaluation, crossing[evaluation.pk], stages, f"could not re-read the deal: {error}"
                    )
                    run.decisions += len(crossing[evaluation.pk])
            to_decide = [evaluation for evaluation in to_decide if evaluation.pk in fresh]
        else:
            run.kommo_reads += len(to_read)
            for evaluation in to_read:
                found = read.get(evaluation.stage_change.lead.kommo_id)
                fresh[evaluation.pk] = (_fresh(found) if found is not None else None, "kommo", asked_at)
    if not to_decide:
        return run

    changes = [evaluation.stage_change for evaluation in to_decide]
    superseded = _later_moves(changes)
    people = stakeholders_for_leads(lead_ids=[change.lead_id for change in changes])
    for evaluation in to_decide:
        change = evaluation.stage_change
        state, read_from, fetched_at = fresh[evaluation.pk]
        views = stakeholder_views(people.get(change.lead_id, []))
        written = _decide(
            evaluation=evaluation,
            rules=crossing[evaluation.pk],
            evaluator=evaluator,
            fresh=state,
            fresh_source=(read_from, fetched_at),
            superseded=change.pk in superseded,
            people=views,
        )
        run.evaluated += 1
        run.from_mirror += read_from == "mirror"
        run.decisions += written.decisions
        run.blocked += written.blocked
        run.outbound += written.outbound
    pending, running = _undecided(account_id)
    run.undecided = pending + running
    if run.retry_in is None and pending:
        run.retry_in = 0.0
    return run


def _undecided(account_id: int) -> tuple[int, int]:
    """The account's moves waiting for a decision, in one read (the queue's index): (pending: the next
    run's, running: claimed by a run that is deciding them — one lost for STUCK_RUNNING is not)."""
    left = GateEvaluation.objects.filter(
        account_id=account_id, status__in=[GateEvaluation.Status.PENDING, GateEvaluation.Status.RUNNING]
    ).aggregate(
        pending=Count("pk", filter=Q(status=GateEvaluation.Status.PENDING)),
        running=Count(
            "pk",
            filter=Q(status=GateEvaluation.Status.RUNNING, claimed_at__gte=timezone.now() - STUCK_RUNNING),
        ),
    )
    return left["pending"], left["running"]


def gate_moves_undecided(*, account_id: int) -> int:
    """How many of the account's recorded moves wait for the gates' decision (pending, or being decided):
    none, and no delivery of moves waiting, is the end of a burst for the outbound plan."""
    return sum(_undecided(account_id))


@dataclass
class EnforcementRun:
    evaluation: EvaluationRun
    flush: FlushResult | None = None

    @property
    def flush_in(self) -> float | None:
        """Seconds until more outbound changes are due (None: nothing waits, or it is not this run's)."""
        return self.flush.next_in if self.flush is not None else None


def gates_enforce(
    *,
    account_id: int,
    client: KommoClient | None = None,
    backlog: int = 0,
    moves_backlog: int | None = None,
) -> EnforcementRun:
    """Evaluate the account's pending moves; when that queued writes, send what is due at once (the moves
    back, and the tasks and notes when they are ready — ``outbound_drain_plan``, which weighs ``backlog``:
    the account's webhook deliveries still waiting to be processed, ``moves_backlog``: those of them that
    report stage moves, and the moves left undecided after this run: none, and no delivery of moves
    waiting, ends a burst's hold)."""
    run = EnforcementRun(evaluation=gate_evaluations_run(account_id=account_id, client=client))
    if run.evaluation.outbound:
        run.flush = outbound_changes_flush(
            account_id=account_id,
            client=client,
            backlog=backlog,
            moves_backlog=moves_backlog,
            undecided=run.evaluation.undecided,
        )
    return run


def _done(evaluations: Sequence[GateEvaluation]) -> None:
    GateEvaluation.objects.filter(pk__in=[e.pk for e in evaluations]).update(
        status=GateEvaluation.Status.DONE, modified=timezone.now()
    )


def _release(evaluations: Sequence[GateEvaluation], error: str) -> None:
    GateEvaluation.objects.filter(pk__in=[e.pk for e in evaluations]).update(
        status=GateEvaluation.Status.PENDING, error=error, modified=timezone.now()
    )


@dataclass
class _Written:
    decisions: int = 0
    blocked: int = 0
    outbound: int = 0


def _transition(stages: _Stages, change: StageChange) -> str:
    to_pipeline = change.to_pipeline_kommo_id or change.lead.pipeline_kommo_id
    before = stages.name(change.from_pipeline_kommo_id, change.from_status_kommo_id)
    return f"{before} → {stages.name(to_pipeline, change.to_status_kommo_id)}"[:300]


def _latency(evaluation: GateEvaluation, now: dt.datetime) -> int | None:
    if evaluation.received_at is None:
        return None
    return max(0, int((now - evaluation.received_at).total_seconds() * 1000))


def _record(
    *,
    evaluation: GateEvaluation,
    rule: GateRule,
    outcome: str,
    reasons: list[str],
    stages: _Stages,
    people: Sequence[semantics.StakeholderView] = (),
    fresh: semantics.FreshLead | None = None,
    fresh_source: tuple[str, dt.datetime | None] = ("kommo", None),
    actions: list[dict[str, Any]] | None = None,
) -> GateDecision:
    change = evaluation.stage_change
    now = timezone.now()
    return GateDecision.objects.create(
        account_id=evaluation.account_id,
        rule=rule,
        rule_version=rule.version,
        mode=rule.mode,
        lead_id=change.lead_id,
        stage_change=change,
        from_status_kommo_id=change.from_status_kommo_id,
        to_status_kommo_id=change.to_status_kommo_id,
        transition=_transition(stages, change),
        outcome=outcome,
        reasons=reasons,
        stakeholders=[person.as_dict() for person in people],
        fresh_state=_fresh_dict(fresh, *fresh_source),
        actions=actions or [],
        received_at=evaluation.received_at,
        latency_ms=_latency(evaluation, now),
    )


def _decide_error(evaluation: GateEvaluation, rules: Sequence[GateRule], stages: _Stages, error: str) -> None:
    with transaction.atomic():
        for rule in rules:
            _record(evaluation=evaluation, rule=rule, outcome=Outcome.ERROR, reasons=[error], stages=stages)
        evaluation.status, evaluation.error = GateEvaluation.Status.DONE, error
        evaluation.save(update_fields=["status", "error", "modified"])


def _decide(
    *,
    evaluation: GateEvaluation,
    rules: Sequence[GateRule],
    evaluator: _Evaluator,
    fresh: semantics.FreshLead | None,
    fresh_source: tuple[str, dt.datetime | None],
    superseded: bool,
    people: Sequence[semantics.StakeholderView],
) -> _Written:
    change = evaluation.stage_change
    stages = evaluator.stages
    written = _Written()
    to_pipeline = change.to_pipeline_kommo_id or change.lead.pipeline_kommo_id
    state = semantics.freshness(
        to_status_kommo_id=change.to_status_kommo_id,
        to_pipeline_kommo_id=to_pipeline,
        at=change.at,
        fresh=fresh,
        later_change_known=superseded,
    )
    with transaction.atomic():
        if GateDecision.objects.filter(stage_change=change, rule__in=rules).exists():
            # Decided already (a redelivered task): nothing is decided or sent twice.
            _done([evaluation])
            return written
        if state is not semantics.Freshness.CURRENT:
            reason = _stale_reason(state, fresh, stages)
            for rule in rules:
                _record(
                    evaluation=evaluation,
                    rule=rule,
                    outcome=Outcome.STALE,
                    reasons=[reason],
                    stages=stages,
                    people=people,
                    fresh=fresh,
                    fresh_source=fresh_source,
                )
                written.decisions += 1
            _done([evaluation])
            return written
        assert fresh is not None
        verdicts = evaluator.verdicts(change, rules, fresh, people)
        blocked = [verdict for verdict in verdicts if verdict.outcome == Outcome.BLOCKED]
        actions_of: dict[int, list[dict[str, Any]]] = {}
        if blocked:
            target = semantics.furthest_back(
                verdict.target for verdict in blocked if verdict.target is not None
            )
            actions_of = _enqueue_block(evaluation, target, to_pipeline, blocked, fresh, stages)
            written.outbound += 1 + 2 * len(blocked)
        for verdict in verdicts:
            actions = actions_of.get(verdict.rule.pk, [])
            if verdict.outcome == Outcome.BLOCKED:
                written.blocked += 1
            _record(
                evaluation=evaluation,
                rule=verdict.rule,
                outcome=verdict.outcome,
                reasons=verdict.reasons,
                stages=stages,
                people=people,
                fresh=fresh,
                fresh_source=fresh_source,
                actions=actions,
            )
            written.decisions += 1
        _done([evaluation])
    return written


def _stale_reason(state: semantics.Freshness, fresh: semantics.FreshLead | None, stages: _Stages) -> str:
    if state is semantics.Freshness.GONE:
        return "the deal is no longer in Kommo"
    if state is semantics.Freshness.SUPERSEDED:
        return "a later move of the deal is known; that move is evaluated instead"
    assert fresh is not None
    where = stages.name(fresh.pipeline_kommo_id, fresh.status_kommo_id)
    return f"the deal is no longer where this move put it (Kommo has it in {where}); nothing done"


def _enqueue_block(
    evaluation: GateEvaluation,
    target: semantics.Stage,
    to_pipeline: int,
    blocked: Sequence[_Verdict],
    fresh: semantics.FreshLead,
    stages: _Stages,
) -> dict[int, list[dict[str, Any]]]:
    """Queue what a block does — one move back, and a task and a note per blocking rule — in one
    ``outbound_changes_enqueue``; returns each blocking rule's actions (by rule pk)."""
    change = evaluation.stage_change
    move = Intended(
        kind=OutboundChange.Kind.LEAD_STATUS,
        entity_kommo_id=change.lead.kommo_id,
        payload={
            "status_id": target.kommo_id,
            "pipeline_id": target.pipeline_kommo_id,
            "expected_status_id": change.to_status_kommo_id,
            "expected_pipeline_id": to_pipeline,
            # the outbound plan holds a move back for company only so long after its move was reported
            "reported_at": (evaluation.received_at or change.created).timestamp(),
            # ...and holds it long only for a burst: many moves made together by Kommo's clock
            "moved_at": change.at.timestamp(),
        },
        idempotency_key=f"gate:move:{change.pk}",
    )
    to_stage = stages.name(target.pipeline_kommo_id, target.kommo_id)
    follow_ups = [_task_and_note(evaluation, verdict, fresh, to_stage, stages) for verdict in blocked]
    writes = [move, *(write for task, note, _ in follow_ups for write in (task, note))]
    rows = outbound_changes_enqueue(account=change.account, writes=writes)
    move_row = rows[0]
    move_action = {
        "action": "move back",
        "to_stage": to_stage,
        "status_id": target.kommo_id,
        "outbound_change": move_row.pk,
        "key": move_row.idempotency_key,
    }
    actions: dict[int, list[dict[str, Any]]] = {}
    for index, (verdict, (_, _, text)) in enumerate(zip(blocked, follow_ups, strict=True)):
        task, note = rows[1 + 2 * index], rows[2 + 2 * index]
        actions[verdict.rule.pk] = [
            move_action,
            {"action": "task", "text": text, "outbound_change": task.pk, "key": task.idempotency_key},
            {"action": "note", "outbound_change": note.pk, "key": note.idempotency_key},
        ]
    return actions


def _task_and_note(
    evaluation: GateEvaluation,
    verdict: _Verdict,
    fresh: semantics.FreshLead,
    to_stage: str,
    stages: _Stages,
) -> tuple[Intended, Intended, str]:
    """The task and the note of one blocking rule, and the task's text."""
    change = evaluation.stage_change
    rule = verdict.rule
    lead = change.lead
    to_pipeline = change.to_pipeline_kommo_id or lead.pipeline_kommo_id
    marker = semantics.gate_marker(rule_id=rule.pk, stage_change_id=change.pk)
    missing = semantics.missing_summary(verdict.reasons)
    values = {
        "deal": lead.name or f"Deal {lead.kommo_id}",
        "missing": missing,
        "stage": to_stage,
        "from_stage": stages.name(change.from_pipeline_kommo_id, change.from_status_kommo_id),
        "to_stage": stages.name(to_pipeline, change.to_status_kommo_id),
        "rule": rule.name,
    }
    text = semantics.task_text_render(template=rule.task_template, values=values)
    due = timezone.now() + dt.timedelta(hours=rule.task_due_hours)
    task = Intended(
        kind=OutboundChange.Kind.TASK_CREATE,
        entity_kommo_id=lead.kommo_id,
        payload={
            "text": f"{text}\n{marker}",
            "complete_till": int(due.timestamp()),
            "responsible_user_id": fresh.responsible_user_id,
            "task_type_id": 1,
            "marker": marker,
            "dedupe_marker": semantics.rule_marker(rule_id=rule.pk),
        },
        idempotency_key=f"gate:{rule.pk}:{change.pk}:task",
        dedupe_key=f"gate-task:{rule.pk}:{lead.kommo_id}",
    )
    note_text = (
        f"The portal moved this deal back from {values['to_stage']} to {values['stage']}: "
        f"gate “{rule.name}” requires it — {missing}.\n{marker}"
    )
    note = Intended(
        kind=OutboundChange.Kind.NOTE_CREATE,
        entity_kommo_id=lead.kommo_id,
        payload={"text": note_text, "marker": marker},
        idempotency_key=f"gate:{rule.pk}:{change.pk}:note",
    )
    return task, note, text


# -- the sweeper -----------------------------------------------------------------------------------------

# Work is swept back in line when it has waited this long with nobody on it: far beyond the gates' own
# windows (0.2 s for an evaluation, at most 5 s for a task or note), short enough for a manager.
SWEEP_AFTER = dt.timedelta(seconds=60)


@dataclass
class SweepFound:
    evaluate: list[int]  # accounts with evaluations to run again
    flush: list[int]  # accounts with outbound changes to send


def gates_sweep(*, older_than: dt.timedelta = SWEEP_AFTER) -> SweepFound:
    """The accounts whose gate work was left behind (its task lost, its worker killed): evaluations
    pending longer than ``older_than`` or running longer than :data:`STUCK_RUNNING`; outbound changes
    pending or unknown and due for longer than ``older_than``, or sending longer than
    :data:`~apps.kommo.services.outbound.STUCK_SENDING`. Accounts whose circuit breaker is open are
    left alone: their changes are held on purpose, and the reset drains them."""
    now = timezone.now()
    cutoff = now - older_than
    blocked = KommoAccount.objects.filter(blocked_since__isnull=False).values("pk")
    evaluations = GateEvaluation.objects.filter(
        Q(status=GateEvaluation.Status.PENDING, modified__lt=cutoff)
        | Q(status=GateEvaluation.Status.RUNNING, claimed_at__lt=now - STUCK_RUNNING)
    ).exclude(account_id__in=blocked)
    waiting = Q(status__in=[OutboundChange.Status.PENDING, OutboundChange.Status.UNKNOWN]) & (
        Q(next_attempt_at__isnull=True, modified__lt=cutoff) | Q(next_attempt_at__lt=cutoff)
    )
    stuck = Q(status=OutboundChange.Status.SENDING, sending_at__lt=now - STUCK_SENDING)
    changes = OutboundChange.objects.filter(waiting | stuck).exclude(account_id__in=blocked)
    return SweepFound(
        evaluate=sorted(set(evaluations.values_list("account_id", flat=True))),
        flush=sorted(set(changes.values_list("account_id", flat=True))),
    )


# -- defaults --------------------------------------------------------------------------------------------

DEFAULT_RULES = (
    # (name, gated stage, role code, requirement)
    (
        "An identified decision maker to leave DM qualification",
        "DM qualification",
        "decision_maker",
        "present",
    ),
    ("The lawyer approved to leave Legal review", "Legal review", "lawyer", "approved"),
)


def _b2b_pipeline(account: KommoAccount) -> Pipeline:
    """The pipeline that has every stage the default rules guard (a "B2B" one preferred)."""
    wanted = {stage.casefold() for _, stage, _, _ in DEFAULT_RULES}
    candidates = []
    for pipeline in Pipeline.objects.filter(account=account, is_deleted=False).order_by("sort", "id"):
        names = {name.casefold() for name in pipeline.statuses.values_list("name", flat=True)}
        if wanted <= names:
            candidates.append(pipeline)
    if not candidates:
        raise ValueError(
            "no pipeline of this account has the stages "
            + ", ".join(stage for _, stage, _, _ in DEFAULT_RULES)
            + " (sync the pipelines first)"
        )
    return next((p for p in candidates if "b2b" in p.name.casefold()), candidates[0])


def gate_rules_install_defaults(*, account: KommoAccount, mode: str) -> list[tuple[GateRule, bool]]:
    """The demo's two rules on the account's B2B pipeline; a rule already installed (by name) is left
    as it is. Returns each rule and whether it was created now."""
    pipeline = _b2b_pipeline(account)
    installed = []
    with transaction.atomic():
        for name, stage_name, role_code, requirement in DEFAULT_RULES:
            role = Role.objects.filter(code=role_code).first()
            if role is None:
                raise ValueError(f"the role {role_code!r} does not exist")
            stage = Status.objects.get(pipeline=pipeline, name__iexact=stage_name)
            rule, created = GateRule.objects.get_or_create(
                account=account,
                name=name,
                defaults={"pipeline": pipeline, "gated_stage": stage, "mode": mode},
            )
            if created:
                GateCondition.objects.create(rule=rule, role=role, requirement=requirement, n=1)
            installed.append((rule, created))
    return installed
