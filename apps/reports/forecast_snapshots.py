"""Forecast snapshots: the forecast of each pipeline as it stands (beat, once a week) and as it stood in
past weeks (the backtest), from the stage stays, the stakeholders and the gate rules ahead.

The computation reads the history once into memory and replays it at each moment: what was known *then* —
the stays entered by then, the outcome of each deal as it stood then — so the same history always gives the
same snapshots. A deal's value and manager are its current ones (the mirror keeps no history of them).
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.gates import semantics
from apps.gates.models import GateRule
from apps.gates.services import stakeholder_views
from apps.kommo import types as kommo_types
from apps.kommo.exceptions import KommoPayloadError
from apps.kommo.models import KommoAccount, Lead, Pipeline, StageStay, Status
from apps.reports import forecast_method as fm
from apps.reports.coverage_snapshots import COVERAGE_FIELDS, week_start
from apps.reports.models import ForecastCategory, ForecastSnapshot, ForecastSnapshotDeal
from apps.stakeholders.models import Role, Stakeholder, StakeholderEvent
from apps.stakeholders.selectors import (
    StakeholderHistory,
    decision_makers_since,
    expected_close_field,
    stakeholder_history,
)

WON, LOST = 142, 143
Category = ForecastCategory.Category


@dataclass(frozen=True)
class Stay:
    lead_id: int
    pipeline_kommo_id: int | None
    status_kommo_id: int
    entered_at: dt.datetime
    left_at: dt.datetime | None


@dataclass(frozen=True)
class Deal:
    pk: int
    kommo_id: int
    price: int
    responsible_user_kommo_id: int
    raw: dict[str, Any]


@dataclass(frozen=True)
class StageInfo:
    kommo_id: int
    name: str
    rank: int
    stages: int
    category: str
    local_id: int
    sort: int


# Coverage state: a decision maker identified, and the approvals the gates ahead require given (None: not
# known, for an account without a stakeholder history).
State = tuple[bool, bool | None]


@dataclass(frozen=True)
class RoleInfo:
    label: str
    is_decision_maker: bool
    approval_valid_days: int | None


@dataclass
class History:
    """What the forecast reads of one account, loaded once: every deal's stays in order, the deals, the
    stakeholder history (or, for an account without one, when each deal's first decision maker's contact
    was created), the roles, the approval conditions of the gates, the stages of each pipeline and their
    categories."""

    account: KommoAccount
    stays: dict[int, list[Stay]]
    deals: dict[int, Deal]
    dm_since: dict[int, dt.datetime]
    stages: dict[int, dict[int, StageInfo]]  # pipeline kommo id -> stage kommo id -> stage
    close_field_id: int | None = None
    people: StakeholderHistory | None = None
    roles: dict[int, RoleInfo] = field(default_factory=dict)
    ahead: dict[int, list[tuple[int, semantics.Condition]]] = field(default_factory=dict)
    _entries: dict[tuple[int | None, int], list[Stay]] | None = field(default=None, repr=False)
    _states: dict[tuple[int, int, dt.datetime], State] = field(default_factory=dict, repr=False)

    @property
    def has_stakeholder_history(self) -> bool:
        return self.people is not None

    def entries(self, pipeline_kommo_id: int, status_kommo_id: int) -> list[Stay]:
        """Every stay in one stage of one pipeline, by the time it was entered (built once)."""
        if self._entries is None:
            index: dict[tuple[int | None, int], list[Stay]] = defaultdict(list)
            for stays in self.stays.values():
                for stay in stays:
                    index[(stay.pipeline_kommo_id, stay.status_kommo_id)].append(stay)
            for found in index.values():
                found.sort(key=lambda stay: (stay.entered_at, stay.lead_id))
            self._entries = dict(index)
        return self._entries.get((pipeline_kommo_id, status_kommo_id), [])

    def stay_at(self, lead_id: int, at: dt.datetime) -> Stay | None:
        """The stay the deal was in at ``at``: the last one entered by then (None before the deal began)."""
        stays = self.stays.get(lead_id, ())
        index = bisect.bisect_right(stays, at, key=lambda stay: stay.entered_at)
        return stays[index - 1] if index else None


def _stages(account: KommoAccount) -> dict[int, dict[int, StageInfo]]:
    """Per pipeline, its open stages in sort order with their rank, and each one's forecast category: the
    admin's, else the last open stage commit, the one before best case, the others pipeline, incoming
    leads omitted."""
    chosen = dict(
        ForecastCategory.objects.filter(status__account=account).values_list("status_id", "category")
    )
    rows = (
        Status.objects.filter(account=account, is_deleted=False, pipeline__isnull=False)
        .exclude(kommo_id__in=semantics.CLOSED_STATUS_IDS)
        .select_related("pipeline")
        .order_by("pipeline_id", "sort", "kommo_id")
    )
    by_pipeline: dict[int, list[Status]] = defaultdict(list)
    for status in rows:
        by_pipeline[status.pipeline.kommo_id].append(status)
    result: dict[int, dict[int, StageInfo]] = {}
    for pipeline_kommo_id, statuses in by_pipeline.items():
        regular = [status for status in statuses if status.type != Status.Type.INCOMING]
        info = {}
        for rank, status in enumerate(statuses, start=1):
            if status.pk in chosen:
                category = chosen[status.pk]
            elif status.type == Status.Type.INCOMING:
                category = Category.OMITTED
            elif regular and status == regular[-1]:
                category = Category.COMMIT
            elif len(regular) > 1 and status == regular[-2]:
                category = Category.BEST_CASE
            else:
                category = Category.PIPELINE
            info[status.kommo_id] = StageInfo(
                status.kommo_id, status.name, rank, len(statuses), category, status.pk, status.sort
            )
        result[pipeline_kommo_id] = info
    return result


def history_load(*, account: KommoAccount, since: dt.datetime | None = None) -> History:
    """The account's history as the forecast reads it: every stay of a deal not deleted that was still
    open or ended after ``since`` (all stays when None)."""
    stays_qs = StageStay.objects.filter(account=account, lead__is_deleted=False)
    if since is not None:
        stays_qs = stays_qs.filter(Q(left_at__isnull=True) | Q(left_at__gte=since) | Q(entered_at__gte=since))
    stays: dict[int, list[Stay]] = defaultdict(list)
    for row in stays_qs.order_by("lead_id", "entered_at", "id").values_list(
        "lead_id", "pipeline_kommo_id", "status_kommo_id", "entered_at", "left_at"
    ):
        stays[row[0]].append(Stay(*row))
    close_field_id = expected_close_field(account=account)
    deals = {
        pk: Deal(pk, kommo_id, price or 0, user or 0, raw if close_field_id else {})
        for pk, kommo_id, price, user, raw in Lead.objects.filter(pk__in=list(stays)).values_list(
            "pk", "kommo_id", "price", "responsible_user_kommo_id", "raw"
        )
    }
    people: StakeholderHistory | None = None
    dm_since: dict[int, dt.datetime] = {}
    if StakeholderEvent.objects.filter(account=account).exists():
        people = stakeholder_history(account=account, fields=COVERAGE_FIELDS)
    else:
        dm_since = {
            lead_id: first
            for lead_id, first in decision_makers_since(account=account).values_list("lead_id", "first")
            if lead_id in stays
        }
    roles = {
        pk: RoleInfo(label, is_dm, valid_days)
        for pk, label, is_dm, valid_days in Role.objects.values_list(
            "pk", "label", "is_decision_maker", "approval_valid_days"
        )
    }
    return History(
        account,
        dict(stays),
        deals,
        dm_since,
        _stages(account),
        close_field_id,
        people,
        roles,
        _gates_ahead(account),
    )


# -- the buying committee ----------------------------------------------------------------------------------


def _gates_ahead(account: KommoAccount) -> dict[int, list[tuple[int, semantics.Condition]]]:
    """Per pipeline (kommo id), the approval conditions of its active gate rules with their gated stage's
    sort: a deal must satisfy those whose gate lies at or after its stage."""
    found: dict[int, list[tuple[int, semantics.Condition]]] = defaultdict(list)
    rules = GateRule.objects.filter(account=account, is_active=True).select_related("gated_stage", "pipeline")
    for rule in rules.prefetch_related("conditions__role"):
        for condition in rule.conditions.all():
            if condition.requirement in semantics.APPROVAL_REQUIREMENTS:
                found[rule.pipeline.kommo_id].append((rule.gated_stage.sort, condition.as_semantics()))
    return found


def committee_states_now(*, history: History, lead_ids: Iterable[int]) -> dict[int, tuple[bool, bool]]:
    """The coverage state of open deals as they stand: a decision maker identified, and every approval the
    gates ahead of the deal's stage require already given."""
    ids = list(lead_ids)
    rows: dict[int, list[Stakeholder]] = defaultdict(list)
    for row in Stakeholder.objects.filter(lead_id__in=ids).select_related("role"):
        rows[row.lead_id].append(row)
    people = {lead_id: stakeholder_views(found) for lead_id, found in rows.items()}
    dm_now = set(
        Stakeholder.objects.filter(lead_id__in=ids, role__is_decision_maker=True).values_list(
            "lead_id", flat=True
        )
    )
    ahead = history.ahead
    states = {}
    for lead_id in ids:
        stay = history.stays[lead_id][-1]
        stage = history.stages.get(stay.pipeline_kommo_id or 0, {}).get(stay.status_kommo_id)
        sort = stage.sort if stage else 0
        conditions = [c for gated_sort, c in ahead.get(stay.pipeline_kommo_id or 0, []) if gated_sort >= sort]
        approvals = not semantics.conditions_failures(
            conditions=conditions, stakeholders=people.get(lead_id, [])
        )
        states[lead_id] = (lead_id in dm_now, approvals)
    return states


def coverage_state_at(
    *, history: History, lead_id: int, at: dt.datetime, pipeline_kommo_id: int | None, stage_sort: int
) -> State:
    """The deal's coverage state at ``at`` while it was in a stage of sort ``stage_sort``, from the
    stakeholders' history (:class:`apps.stakeholders.selectors.StakeholderHistory`, the answers of
    ``stakeholder_state_as_of``): a decision maker on the deal then, and the approvals the gates at or after
    that stage require given by then, judged as the gate would at that moment (expiry included). An account
    without a stakeholder history falls back on the decision makers' contacts' creation, approvals not
    known (None)."""
    if history.people is None:
        return _dm_at(history, lead_id, at), None
    unknown = RoleInfo("", False, None)
    views = [
        semantics.StakeholderView(
            person.name,
            person.role_id,
            history.roles.get(person.role_id or 0, unknown).label,
            person.approval_status,
            approval_decided_at=person.approval_decided_at,
            approval_valid_days=history.roles.get(person.role_id or 0, unknown).approval_valid_days,
        )
        for person in history.people.state_at(lead_id, at)
    ]
    ahead = history.ahead.get(pipeline_kommo_id or 0, [])
    conditions = [condition for gated_sort, condition in ahead if gated_sort >= stage_sort]
    dm = any(history.roles.get(view.role_id or 0, unknown).is_decision_maker for view in views)
    return dm, not semantics.conditions_failures(conditions=conditions, stakeholders=views, now=at)


def committee_states_as_of(*, history: History, lead_ids: Iterable[int], at: dt.datetime) -> dict[int, State]:
    """The coverage state of open deals as it was at ``at``, in the stage each was in then
    (:func:`coverage_state_at`)."""
    states: dict[int, State] = {}
    for lead_id in lead_ids:
        stay = history.stay_at(lead_id, at)
        pipeline = stay.pipeline_kommo_id if stay else None
        stage = history.stages.get(pipeline or 0, {}).get(stay.status_kommo_id) if stay else None
        states[lead_id] = coverage_state_at(
            history=history,
            lead_id=lead_id,
            at=at,
            pipeline_kommo_id=pipeline,
            stage_sort=stage.sort if stage else 0,
        )
    return states


def _dm_at(history: History, lead_id: int, at: dt.datetime) -> bool:
    """Without a stakeholder history, a decision maker counts from the day their contact (or catalog
    element) was created in Kommo (as the coverage backfill does)."""
    since = history.dm_since.get(lead_id)
    return since is not None and since <= at


# -- one snapshot -------------------------------------------------------------------------------------------


@dataclass
class StageFigures:
    kommo_id: int
    name: str
    won: int
    lost: int
    prior: float
    p: float
    remaining_days: float
    remaining_measured: bool
    # the closed cohort's deals by their coverage state when they left the stage: state -> [won, closed]
    states: dict[State, list[int]] = field(default_factory=dict)

    def factor(self, state: State) -> float:
        won, closed = self.states.get(state, (0, 0))
        return fm.committee_factor(
            won_in_state=won, closed_in_state=closed, won_all=self.won, closed_all=self.won + self.lost
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.kommo_id,
            "name": self.name,
            "won": self.won,
            "lost": self.lost,
            "prior": round(self.prior, 6),
            "p": round(self.p, 6),
            "remaining_days": round(self.remaining_days, 3),
            "remaining_measured": self.remaining_measured,
            "states": [
                {
                    "dm": dm,
                    "approvals": approvals,
                    "won": won,
                    "closed": closed,
                    "factor": round(self.factor((dm, approvals)), 6),
                }
                for (dm, approvals), (won, closed) in sorted(
                    self.states.items(), key=lambda item: (item[0][0], item[0][1] is None, bool(item[0][1]))
                )
            ],
        }


@dataclass
class DealFigures:
    deal: Deal
    stage: StageInfo | None
    status_kommo_id: int
    p: float
    p_committee: float
    dm: bool
    approvals: bool | None
    expected_close: dt.date
    from_field: bool
    period: str

    @property
    def category(self) -> str:
        return self.stage.category if self.stage else Category.PIPELINE


@dataclass
class Computed:
    at: dt.datetime
    current_start: dt.date
    next_start: dt.date
    stages: list[StageFigures]
    deals: list[DealFigures]

    def figures(self, period: str) -> dict[str, int]:
        rows = [deal for deal in self.deals if deal.period == period]
        by_category: dict[str, int] = defaultdict(int)
        for deal in rows:
            by_category[deal.category] += deal.deal.price
        commit = by_category[Category.COMMIT]
        best = commit + by_category[Category.BEST_CASE]
        return {
            "weighted": round(sum(deal.deal.price * deal.p for deal in rows)),
            "committee": round(sum(deal.deal.price * deal.p_committee for deal in rows)),
            "commit": commit,
            "best_case": best,
            "pipeline": best + by_category[Category.PIPELINE],
        }


def _stage_figures(
    history: History, pipeline_kommo_id: int, stage: StageInfo, at: dt.datetime
) -> StageFigures:
    """The stage's closed cohort as known at ``at``: the deals that entered it (first time in the window)
    between the window's bounds before ``at``, and how each stood at ``at`` — won, lost or still open (left
    out). p with its prior; the median days from entering the stage to won; the win rates by coverage state
    at the moment each left the stage (read from the stakeholder history, once per deal and stay)."""
    newest = fm.months_before(at, settings.REPORTS_FORECAST_COHORT_MIN_MONTHS)
    oldest = fm.months_before(at, settings.REPORTS_FORECAST_COHORT_MAX_MONTHS)
    won = lost = 0
    cycles: list[float] = []
    figures = StageFigures(stage.kommo_id, stage.name, 0, 0, 0.0, 0.0, 0.0, False)
    entries = history.entries(pipeline_kommo_id, stage.kommo_id)
    first = bisect.bisect_left(entries, oldest, key=lambda stay: stay.entered_at)
    last = bisect.bisect_left(entries, newest, key=lambda stay: stay.entered_at)
    seen: set[int] = set()
    for entry in entries[first:last]:
        lead_id = entry.lead_id
        if lead_id in seen:
            continue  # a deal counts once, by its first entry in the window
        seen.add(lead_id)
        now_in = history.stay_at(lead_id, at)
        if now_in is None or now_in.status_kommo_id not in (WON, LOST):
            continue
        left = min(entry.left_at or at, at)
        key = (lead_id, stage.kommo_id, left)
        state = history._states.get(key)
        if state is None:
            state = history._states[key] = coverage_state_at(
                history=history,
                lead_id=lead_id,
                at=left,
                pipeline_kommo_id=pipeline_kommo_id,
                stage_sort=stage.sort,
            )
        is_won = now_in.status_kommo_id == WON
        if is_won:
            won += 1
            cycles.append((now_in.entered_at - entry.entered_at).total_seconds() / 86400)
        else:
            lost += 1
        counts = figures.states.setdefault(state, [0, 0])
        counts[0] += is_won
        counts[1] += 1
    prior = fm.stage_prior(rank=stage.rank, stages=stage.stages)
    measured = fm.median(cycles)
    default = (stage.stages - stage.rank + 1) * settings.REPORTS_STAGE_DEFAULT_DAYS
    figures.won, figures.lost, figures.prior = won, lost, prior
    figures.p = fm.stage_p(won=won, lost=lost, prior=prior, min_closed=settings.REPORTS_FORECAST_MIN_CLOSED)
    figures.remaining_days = measured if measured is not None else default
    figures.remaining_measured = measured is not None
    return figures


def _close_from_field(history: History, deal: Deal) -> dt.date | None:
    """The deal's expected close date from the account's close-date field, when it has a value: the mirror's
    typed reading of the last payload (a date field's value is a datetime)."""
    if not history.close_field_id:
        return None
    for entry in deal.raw.get("custom_fields_values") or []:
        if not isinstance(entry, dict) or entry.get("field_id") != history.close_field_id:
            continue
        try:
            typed = kommo_types.CustomFieldValue.from_api(entry)
        except KommoPayloadError:
            return None
        for item in typed.values:
            if isinstance(item.value, dt.datetime):
                return (
                    timezone.localtime(item.value).date()
                    if timezone.is_aware(item.value)
                    else item.value.date()
                )
    return None


def forecast_compute(*, history: History, pipeline_kommo_id: int, at: dt.datetime, live: bool) -> Computed:
    """The forecast of one pipeline at ``at``. ``live``: the moment is now — the coverage state is read from
    the stakeholders as they stand and the close-date field is used; a past moment (the backtest) reads it
    from the stakeholder history, and ignores the close-date field, whose past values are not kept."""
    stages = history.stages.get(pipeline_kommo_id, {})
    stage_figures = {
        kommo_id: _stage_figures(history, pipeline_kommo_id, s, at) for kommo_id, s in stages.items()
    }
    current = fm.quarter_start(timezone.localtime(at).date())
    after = fm.quarter_after(current)
    beyond = fm.quarter_after(after)
    open_now = []
    for lead_id in history.stays:
        stay = history.stay_at(lead_id, at)
        if stay is None or stay.status_kommo_id in (WON, LOST) or stay.pipeline_kommo_id != pipeline_kommo_id:
            continue
        if stay.left_at is not None and stay.left_at <= at:
            continue
        if lead_id in history.deals:
            open_now.append((lead_id, stay))
    open_ids = [lead_id for lead_id, _ in open_now]
    states = (
        committee_states_now(history=history, lead_ids=open_ids)
        if live
        else committee_states_as_of(history=history, lead_ids=open_ids, at=at)
    )
    deals = []
    for lead_id, stay in open_now:
        deal = history.deals[lead_id]
        stage = stages.get(stay.status_kommo_id)
        figures = stage_figures.get(stay.status_kommo_id)
        dm, approvals = states[lead_id]
        p = figures.p if figures else 0.5
        # Without a stakeholder history the cohort's approvals are not known: the state is the decision
        # maker's alone, for the open deals as for the cohort.
        state = (dm, approvals if history.people is not None else None)
        p_committee = fm.p_adjusted(p=p, factor=figures.factor(state)) if figures else p
        close = _close_from_field(history, deal) if live else None
        if close is None:
            remaining = figures.remaining_days if figures else settings.REPORTS_STAGE_DEFAULT_DAYS
            moment = fm.expected_close(entered=stay.entered_at, remaining_days=remaining, at=at)
            expected = timezone.localtime(moment).date()
        else:
            expected = close
        period = (
            ForecastSnapshotDeal.Period.CURRENT
            if expected < after
            else ForecastSnapshotDeal.Period.NEXT
            if expected < beyond
            else ForecastSnapshotDeal.Period.LATER
        )
        deals.append(
            DealFigures(
                deal,
                stage,
                stay.status_kommo_id,
                p,
                p_committee,
                dm,
                approvals,
                expected,
                close is not None,
                period,
            )
        )
    deals.sort(key=lambda d: (-d.deal.price, d.deal.kommo_id))
    return Computed(at, current, after, list(stage_figures.values()), deals)


def _snapshot_write(
    *, account: KommoAccount, pipeline: Pipeline, week: dt.date, computed: Computed, backtested: bool
) -> ForecastSnapshot:
    now_figures, next_figures = computed.figures("current"), computed.figures("next")
    snapshot = ForecastSnapshot.objects.create(
        account=account,
        pipeline=pipeline,
        pipeline_kommo_id=pipeline.kommo_id,
        week=week,
        taken_at=computed.at,
        backtested=backtested,
        current_start=computed.current_start,
        next_start=computed.next_start,
        **{f"current_{key}": value for key, value in now_figures.items()},
        **{f"next_{key}": value for key, value in next_figures.items()},
        stages=[stage.as_dict() for stage in computed.stages],
    )
    ForecastSnapshotDeal.objects.bulk_create(
        ForecastSnapshotDeal(
            snapshot=snapshot,
            lead_id=deal.deal.pk,
            lead_kommo_id=deal.deal.kommo_id,
            status_kommo_id=deal.status_kommo_id,
            stage=deal.stage.name if deal.stage else "",
            responsible_user_kommo_id=deal.deal.responsible_user_kommo_id,
            value=deal.deal.price,
            p=round(deal.p, 6),
            p_committee=round(deal.p_committee, 6),
            dm_identified=deal.dm,
            approvals_present=deal.approvals,
            expected_close=deal.expected_close,
            close_from_field=deal.from_field,
            period=deal.period,
            category=deal.category,
        )
        for deal in computed.deals
    )
    return snapshot


def _pipelines(account: KommoAccount) -> list[Pipeline]:
    return list(
        Pipeline.objects.filter(account=account, is_deleted=False, is_archive=False).order_by("sort", "pk")
    )


def _window_start(at: dt.datetime) -> dt.datetime:
    return fm.months_before(at, settings.REPORTS_FORECAST_COHORT_MAX_MONTHS)


def forecast_snapshot_take(*, account: KommoAccount, now: dt.datetime | None = None) -> int:
    """This week's forecast snapshot of each pipeline of ``account``, taken as things stand, unless the
    week has one already: a snapshot is never changed. Returns the snapshots written."""
    now = now or timezone.now()
    week = week_start(now)
    written = 0
    with transaction.atomic():
        KommoAccount.objects.select_for_update().filter(pk=account.pk).first()  # one writer per account
        have = set(
            ForecastSnapshot.objects.filter(account=account, week=week).values_list(
                "pipeline_kommo_id", flat=True
            )
        )
        pipelines = [pipeline for pipeline in _pipelines(account) if pipeline.kommo_id not in have]
        if not pipelines:
            return 0
        history = history_load(account=account, since=_window_start(now))
        for pipeline in pipelines:
            computed = forecast_compute(
                history=history, pipeline_kommo_id=pipeline.kommo_id, at=now, live=True
            )
            _snapshot_write(
                account=account, pipeline=pipeline, week=week, computed=computed, backtested=False
            )
            written += 1
    return written


def week_begins(week: dt.date) -> dt.datetime:
    """The moment a week starts: its Monday at midnight, in the portal's time zone."""
    return timezone.make_aware(dt.datetime.combine(week, dt.time()))


def forecast_backtest(
    *, account: KommoAccount, weeks: int, now: dt.datetime | None = None, replace: bool = False
) -> list[tuple[dt.date, int, int]]:
    """The snapshots the portal would have taken at the start of each of the ``weeks`` weeks before this
    one, from the history as it was known then, marked ``backtested``. A week with a snapshot is left alone,
    except that ``replace`` rebuilds the backtested ones (never one taken live). The same history gives the
    same snapshots. Returns (week, pipeline kommo id, deals) for each snapshot written."""
    now = now or timezone.now()
    this_week = week_start(now)
    wanted = [this_week - dt.timedelta(weeks=back) for back in range(weeks, 0, -1)]
    if not wanted:
        return []
    pipelines = _pipelines(account)
    history = history_load(account=account, since=_window_start(week_begins(wanted[0])))
    written = []
    for week in wanted:
        at = week_begins(week)
        with transaction.atomic():
            KommoAccount.objects.select_for_update().filter(pk=account.pk).first()
            existing = ForecastSnapshot.objects.filter(account=account, week=week)
            if replace:
                _delete_backtested(existing.filter(backtested=True))
            have = set(existing.values_list("pipeline_kommo_id", flat=True))
            for pipeline in pipelines:
                if pipeline.kommo_id in have:
                    continue
                computed = forecast_compute(
                    history=history, pipeline_kommo_id=pipeline.kommo_id, at=at, live=False
                )
                _snapshot_write(
                    account=account, pipeline=pipeline, week=week, computed=computed, backtested=True
                )
                written.append((week, pipeline.kommo_id, len(computed.deals)))
    return written


def _delete_backtested(snapshots: Any) -> None:
    """Backtested snapshots may be rebuilt (``--replace``); a snapshot taken live is never deleted here."""
    ids = list(snapshots.filter(backtested=True).values_list("pk", flat=True))
    ForecastSnapshotDeal.objects.filter(snapshot_id__in=ids).delete()
    ForecastSnapshot.objects.filter(pk__in=ids, backtested=True).delete()


def snapshot_rows(snapshots: Sequence[ForecastSnapshot]) -> list[tuple[Any, ...]]:
    """The content of snapshots without their ids and bookkeeping times: equal for equal histories."""
    rows: list[tuple[Any, ...]] = []
    for snapshot in snapshots:
        head = tuple(
            getattr(snapshot, name)
            for name in (
                "pipeline_kommo_id",
                "week",
                "taken_at",
                "backtested",
                "current_start",
                "next_start",
                "current_weighted",
                "current_committee",
                "current_commit",
                "current_best_case",
                "current_pipeline",
                "next_weighted",
                "next_committee",
                "next_commit",
                "next_best_case",
                "next_pipeline",
            )
        )
        deals = tuple(
            snapshot.deals.order_by("lead_kommo_id").values_list(
                "lead_kommo_id",
                "status_kommo_id",
                "stage",
                "responsible_user_kommo_id",
                "value",
                "p",
                "p_committee",
                "dm_identified",
                "approvals_present",
                "expected_close",
                "close_from_field",
                "period",
                "category",
            )
        )
        rows.append((head, repr(snapshot.stages), deals))
    return rows
