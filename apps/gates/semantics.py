"""Gate semantics as pure functions: which moves a gate sees, what its conditions say about a deal's
stakeholders, whether Kommo's fresh state still matches the move, and the texts the portal writes.

Nothing here touches the database or Kommo; the services feed it plain values, so every rule below is
tested exhaustively on its own (``tests/gates/test_semantics.py``). ``docs/gates.md`` states the rules in
prose.
"""

from __future__ import annotations

import datetime as dt
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from apps.kommo.types import LOST_STATUS_ID, WON_STATUS_ID
from apps.stakeholders.wording import role_in_sentence

CLOSED_STATUS_IDS = frozenset({WON_STATUS_ID, LOST_STATUS_ID})

# Requirements of a condition (the values of GateCondition.Requirement).
PRESENT = "present"
APPROVED = "approved"
NOT_BLOCKING = "not_blocking"
APPROVED_CURRENT = "approved_current"  # approved, and the approval has not expired
APPROVED_WITHIN = "approved_within"  # approved within the last ``days``
APPROVAL_REQUIREMENTS = frozenset({APPROVED, APPROVED_CURRENT, APPROVED_WITHIN})
NO_OBJECTION = "no_objection"  # no open objection weighing at least ``min_weight``
TOUCHED_WITHIN = "touched_within"  # touched within the last ``days``

# The requirements that need ``days``.
NEEDS_DAYS = frozenset({APPROVED_WITHIN, TOUCHED_WITHIN})

# Approval states (the values of apps.stakeholders.models.Approval).
APPROVAL_APPROVED = "approved"
APPROVAL_REJECTED = "rejected"
APPROVAL_EXPIRED = "expired"

# Placeholders a rule's task template may use.
TEMPLATE_PLACEHOLDERS = frozenset({"deal", "missing", "stage", "rule", "from_stage", "to_stage"})


@dataclass(frozen=True)
class Stage:
    """A stage as the semantics need it: its Kommo id, its pipeline's Kommo id and its sort."""

    kommo_id: int
    pipeline_kommo_id: int
    sort: int

    @property
    def is_closed(self) -> bool:
        return self.kommo_id in CLOSED_STATUS_IDS


def gate_crossed(*, gated: Stage, from_stage: Stage | None, to_stage: Stage) -> bool:
    """Whether a move from ``from_stage`` to ``to_stage`` crosses the gate at ``gated``.

    - Inside the gated pipeline a gate fires on a forward move that crosses it:
      ``sort(from) ≤ sort(gated) < sort(to)``. That includes a skip over the gated stage and a jump
      straight to won (142 sorts after every open stage); leaving the gated stage forward is crossing it.
    - A move to lost (143) is never gated, nor is a backward move or a move that stays before the gate.
    - A deal that enters the gated pipeline from another pipeline, or is reopened from won/lost, comes
      from outside the pipeline's order: the gate fires when it lands past the gated stage.
    - A move that ends in another pipeline is not this gate's business (the deal left its pipeline).
    - A move with no known origin (the first time the portal sees the deal) is not a move: not gated.
    """
    if to_stage.kommo_id == LOST_STATUS_ID:
        return False
    if to_stage.pipeline_kommo_id != gated.pipeline_kommo_id:
        return False
    if from_stage is None or from_stage == to_stage:
        return False
    if from_stage.pipeline_kommo_id != gated.pipeline_kommo_id or from_stage.is_closed:
        return to_stage.sort > gated.sort
    return from_stage.sort <= gated.sort < to_stage.sort


def move_back_target(*, gated: Stage, from_stage: Stage, configured: Stage | None) -> Stage:
    """Where a blocked deal goes: the rule's configured stage, else the stage it came from when that is
    an open stage of the gated pipeline, else the gated stage itself (a deal that came from another
    pipeline or from won/lost waits at the gate)."""
    if configured is not None:
        return configured
    if from_stage.pipeline_kommo_id == gated.pipeline_kommo_id and not from_stage.is_closed:
        return from_stage
    return gated


def furthest_back(stages: Iterable[Stage]) -> Stage:
    """Of several move-back targets (several rules blocked the same move), the earliest stage: the deal
    must end up before every gate it failed."""
    return min(stages, key=lambda stage: (stage.sort, stage.kommo_id))


# -- conditions ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    role_id: int
    role_label: str
    requirement: str
    n: int = 1
    days: int | None = None  # approved within / touched within
    min_weight: Decimal | None = None  # no open objection weighing at least this (None: any)


@dataclass(frozen=True)
class StakeholderView:
    """A stakeholder as a condition sees it; also what a decision's snapshot stores."""

    name: str
    role_id: int | None
    role_label: str
    approval: str
    approval_decided_at: dt.datetime | None = None
    approval_valid_days: int | None = None  # the role's expiry of an approval (None: never)
    last_touch: dt.datetime | None = None
    objection_open: bool = False
    objection: str = ""
    objection_weight: Decimal | None = None
    objection_raised_at: dt.datetime | None = None

    def approval_at(self, now: dt.datetime) -> str:
        """The approval at ``now``: ``expired`` once the role's days have passed since it was given."""
        if (
            self.approval == APPROVAL_APPROVED
            and self.approval_valid_days is not None
            and self.approval_decided_at is not None
            and self.approval_decided_at + dt.timedelta(days=self.approval_valid_days) <= now
        ):
            return APPROVAL_EXPIRED
        return self.approval

    def as_dict(self) -> dict[str, object]:
        def moment(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "name": self.name,
            "role_id": self.role_id,
            "role": self.role_label,
            "approval": self.approval,
            "approval_decided_at": moment(self.approval_decided_at),
            "last_touch": moment(self.last_touch),
            "objection": {
                "text": self.objection,
                "weight": None if self.objection_weight is None else str(self.objection_weight.normalize()),
                "raised_at": moment(self.objection_raised_at),
            }
            if self.objection_open
            else None,
        }


def _names(people: Sequence[StakeholderView]) -> str:
    return ", ".join(person.name or "unnamed" for person in people)


def _days(amount: int) -> str:
    return "1 day" if amount == 1 else f"{amount} days"


def _age(since: dt.datetime | None, now: dt.datetime) -> str:
    if since is None:
        return ""
    return f", open {_days(max(0, (now - since).days))}"


def condition_failure(
    *, condition: Condition, stakeholders: Sequence[StakeholderView], now: dt.datetime | None = None
) -> str | None:
    """Why the deal's stakeholders fail one condition, in words for a manager; None when it holds.

    - present: at least ``n`` stakeholders hold the role, whatever their approval.
    - approved: at least ``n`` stakeholders with the role have approved (expired or not).
    - approved and not expired: at least ``n`` approvals given less than the role's days before ``now``.
    - approved within N days: at least ``n`` approvals given in the ``days`` before ``now``.
    - not blocking: no stakeholder with the role has rejected (a deal without one passes).
    - no objection: no stakeholder with the role has an open objection weighing at least ``min_weight``
      (any weight when it is None; an objection stated without a weight counts as weighing 0).
    - touched within N days: at least ``n`` stakeholders with the role touched in the ``days`` before
      ``now``.
    ``now`` is when the decision is taken (default: now).
    """
    now = now or dt.datetime.now(dt.UTC)
    holders = [person for person in stakeholders if person.role_id == condition.role_id]
    label = role_in_sentence(condition.role_label)
    requirement = condition.requirement
    if requirement == PRESENT:
        if len(holders) >= condition.n:
            return None
        if condition.n == 1:
            return f"no {label} is identified on the deal"
        return f"{condition.n} stakeholders as {label} needed, {len(holders)} identified"
    if requirement in APPROVAL_REQUIREMENTS:
        days = condition.days or 0

        def counts(person: StakeholderView) -> bool:
            if person.approval != APPROVAL_APPROVED:
                return False
            if requirement == APPROVED_CURRENT:
                return person.approval_at(now) == APPROVAL_APPROVED
            if requirement == APPROVED_WITHIN:
                decided = person.approval_decided_at
                return decided is not None and decided > now - dt.timedelta(days=days)
            return True

        approved = [person for person in holders if counts(person)]
        if len(approved) >= condition.n:
            return None
        if not holders:
            return f"no {label} is on the deal to approve"

        def state(person: StakeholderView) -> str:
            decided = person.approval_decided_at
            if requirement == APPROVED_WITHIN and person.approval == APPROVAL_APPROVED:
                return "approved " + (decided.date().isoformat() if decided else "on an unknown day")
            shown = person.approval_at(now)
            if shown == APPROVAL_EXPIRED and decided is not None:
                return f"approval of {decided.date().isoformat()} expired"
            return shown

        waiting = [person for person in holders if not counts(person)]
        states = ", ".join(f"{person.name or 'unnamed'}: {state(person)}" for person in waiting)
        if condition.n == 1:
            if requirement == APPROVED_CURRENT:
                return f"the {label} has no current approval ({states})"
            if requirement == APPROVED_WITHIN:
                return f"the {label} has not approved within {_days(days)} ({states})"
            return f"the {label} has not approved ({states})"
        return f"{condition.n} approvals by a {label} needed, {len(approved)} given ({states})"
    if requirement == NOT_BLOCKING:
        rejected = [person for person in holders if person.approval == APPROVAL_REJECTED]
        if not rejected:
            return None
        return f"the {label} rejected ({_names(rejected)})"
    if requirement == NO_OBJECTION:
        floor = condition.min_weight
        blocking = [
            person
            for person in holders
            if person.objection_open and (floor is None or (person.objection_weight or Decimal(0)) >= floor)
        ]
        if not blocking:
            return None
        texts = "; ".join(
            f"{person.name or 'unnamed'}: "
            + (f"“{person.objection}”" if person.objection else "objection")
            + (
                f", weight {person.objection_weight.normalize()}"
                if person.objection_weight is not None
                else ""
            )
            + _age(person.objection_raised_at, now)
            for person in blocking
        )
        return f"the {label} has an open objection ({texts})"
    if requirement == TOUCHED_WITHIN:
        days = condition.days or 0
        since = now - dt.timedelta(days=days)
        touched = [
            person for person in holders if person.last_touch is not None and person.last_touch > since
        ]
        if len(touched) >= condition.n:
            return None
        if not holders:
            return f"no {label} is on the deal to touch"
        last = ", ".join(
            f"{person.name or 'unnamed'}: "
            + (person.last_touch.date().isoformat() if person.last_touch else "never")
            for person in holders
            if person not in touched
        )
        return f"the {label} was not touched within {_days(days)} (last touch {last})"
    raise ValueError(f"unknown requirement: {condition.requirement!r}")


def conditions_failures(
    *,
    conditions: Sequence[Condition],
    stakeholders: Sequence[StakeholderView],
    now: dt.datetime | None = None,
) -> list[str]:
    """The failures of every condition of a rule, in the rules' order; empty when the deal passes."""
    now = now or dt.datetime.now(dt.UTC)
    failures = []
    for condition in conditions:
        failure = condition_failure(condition=condition, stakeholders=stakeholders, now=now)
        if failure is not None:
            failures.append(failure)
    return failures


# -- exemptions ------------------------------------------------------------------------------------------


def exemption(
    *,
    exempt_user_ids: Iterable[int],
    override_tag: str,
    moved_by: int | None,
    updated_by: int | None,
    tags: Iterable[str],
) -> str | None:
    """Why a move passes without looking at the conditions, or None. The user who moved the deal is the
    StageChange's ``moved_by``, else the fresh lead's ``updated_by``; the override tag matches a tag name
    regardless of case and surrounding spaces."""
    exempt = set(exempt_user_ids)
    mover = moved_by if moved_by is not None else updated_by
    if mover is not None and mover in exempt:
        return f"moved by exempt user {mover}"
    wanted = override_tag.strip().casefold()
    if wanted and any(tag.strip().casefold() == wanted for tag in tags):
        return f"carries the override tag {override_tag.strip()!r}"
    return None


# -- fresh state -----------------------------------------------------------------------------------------


class Freshness(StrEnum):
    CURRENT = "current"  # the deal is where the move put it: act
    MOVED = "moved"  # Kommo has it in another stage now
    SUPERSEDED = "superseded"  # a later move of the deal is known: that one is evaluated instead
    GONE = "gone"  # Kommo no longer has the deal (deleted)


@dataclass(frozen=True)
class FreshLead:
    """What the fresh read from Kommo says about a deal."""

    status_kommo_id: int
    pipeline_kommo_id: int
    updated_at: dt.datetime | None
    updated_by: int | None
    responsible_user_id: int | None
    tags: tuple[str, ...]
    is_deleted: bool = False


def freshness(
    *,
    to_status_kommo_id: int,
    to_pipeline_kommo_id: int,
    at: dt.datetime,
    fresh: FreshLead | None,
    later_change_known: bool,
) -> Freshness:
    """Whether the deal is still where the StageChange said, so that acting on it is right.

    Status and pipeline must match. When Kommo's ``updated_at`` is later than the move, something
    happened since: if that was another move the portal already knows of, that move is the one to
    evaluate (SUPERSEDED); a later edit that kept the stage (a field, the price) does not undo the move,
    so the deal is acted on. A delivery that arrives after the deal moved on is MOVED; its own later
    move is (or will be) evaluated by itself.
    """
    if fresh is None or fresh.is_deleted:
        return Freshness.GONE
    if fresh.status_kommo_id != to_status_kommo_id or fresh.pipeline_kommo_id != to_pipeline_kommo_id:
        return Freshness.MOVED
    if later_change_known:
        return Freshness.SUPERSEDED
    if fresh.updated_at is not None and fresh.updated_at < at - dt.timedelta(seconds=1):
        # Kommo's copy is older than the move we were told about: a stale read; act on nothing.
        return Freshness.MOVED
    return Freshness.CURRENT


# -- texts -----------------------------------------------------------------------------------------------


def template_placeholders(template: str) -> set[str]:
    """The ``{names}`` a template uses; ``ValueError`` when it is not a valid format string."""
    names = set()
    for _literal, name, _spec, _conversion in string.Formatter().parse(template):
        if name is not None:
            names.add(name)
    return names


def task_text_render(*, template: str, values: Mapping[str, str]) -> str:
    """The rule's task text with its placeholders filled; an unknown placeholder stays as written."""

    class _Keep(dict[str, str]):
        def __missing__(self, key: str) -> str:
            return "{" + key + "}"

    return template.format_map(_Keep(values))


def missing_summary(failures: Sequence[str]) -> str:
    """The failures joined for ``{missing}``: "a; b and c"."""
    if not failures:
        return ""
    if len(failures) == 1:
        return failures[0]
    return "; ".join(failures[:-1]) + " and " + failures[-1]


def gate_marker(*, rule_id: int, stage_change_id: int) -> str:
    """The mark the portal leaves in its task and note texts, so that it can find its own writes in
    Kommo (Kommo keeps no client reference on tasks or notes) and tell which rule they belong to."""
    return f"{rule_marker(rule_id=rule_id)}· move {stage_change_id}]"


def rule_marker(*, rule_id: int) -> str:
    """The part of :func:`gate_marker` shared by every write of one rule."""
    return f"[portal gate {rule_id} "
