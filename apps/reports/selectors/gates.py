"""Gates: how often each gate blocked deals, per rule, stage, manager and week; the conditions most often
missing; and how long a blocked deal took to pass.

- *Block*: a gate decision ``blocked`` (enforced: the deal was moved back) or ``would_block`` (a rule in
  dry run), decided in the period, on a deal in the filter.
- *Condition missing*: each reason a blocking decision recorded, with the names in brackets left out
  ("the lawyer has not approved (Ann: pending)" counts as "the lawyer has not approved").
- *Time to pass*: from a deal's first enforced block at a rule since it last passed that rule (the block
  in the period) to its next ``allowed`` or ``exempt`` decision of the same rule, whenever that came;
  median and 75th percentile (linear interpolation, as PostgreSQL's ``percentile_cont``) of the blocks that
  were followed by a pass; the others are counted as still blocked.

Counts are aggregated in SQL; the time to pass walks the decisions of the blocked deals at those rules.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncWeek

from apps.gates.models import GateDecision, GateRule
from apps.kommo.models import KommoAccount, KommoUser, Lead

Outcome = GateDecision.Outcome
BLOCKING = (Outcome.BLOCKED, Outcome.WOULD_BLOCK)
PASSING = (Outcome.ALLOWED, Outcome.EXEMPT)
DAY = 86400.0
_NAMES = re.compile(r"\s*\([^()]*\)\s*$")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile of ``values`` by linear interpolation between closest ranks (PostgreSQL's
    ``percentile_cont``); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def missing_condition(reason: str) -> str:
    """A recorded reason without the people named in brackets at its end."""
    return _NAMES.sub("", reason).strip()


@dataclass
class RuleBlocks:
    rule_id: int
    rule: str
    stage: str
    blocked: int = 0
    would_block: int = 0
    deals: int = 0
    passed: int = 0
    still_blocked: int = 0
    days_to_pass: list[float] = field(default_factory=list, repr=False)

    @property
    def median_days_to_pass(self) -> float | None:
        return percentile(self.days_to_pass, 0.5)

    @property
    def p75_days_to_pass(self) -> float | None:
        return percentile(self.days_to_pass, 0.75)


@dataclass(frozen=True)
class GroupBlocks:
    label: str
    blocked: int
    would_block: int
    deals: int


@dataclass(frozen=True)
class MissingCondition:
    condition: str
    times: int
    deals: int


@dataclass(frozen=True)
class GatesReport:
    weeks: list[tuple[dt.date, dict[str, int]]]  # week → rule name → blocks
    rules: list[RuleBlocks]
    stages: list[GroupBlocks]
    managers: list[GroupBlocks]
    missing: list[MissingCondition]

    @property
    def rule_names(self) -> list[str]:
        return [row.rule for row in self.rules]


def _decisions(account: KommoAccount | None, leads_qs: QuerySet[Lead] | None) -> QuerySet[GateDecision]:
    decisions = GateDecision.objects.all()
    if account is not None:
        decisions = decisions.filter(account=account)
    if leads_qs is not None:
        decisions = decisions.filter(lead__in=leads_qs.values("pk"))
    return decisions


def gates_report(
    *,
    account: KommoAccount | None,
    since: dt.datetime,
    until: dt.datetime,
    leads_qs: QuerySet[Lead] | None = None,
) -> GatesReport:
    """The blocks decided in ``[since, until)`` on the deals among ``leads_qs``, of ``account`` (every account
    when None)."""
    decisions = _decisions(account, leads_qs)
    blocks = decisions.filter(outcome__in=BLOCKING, decided_at__gte=since, decided_at__lt=until).order_by()
    enforced = Q(outcome=Outcome.BLOCKED)
    dry = Q(outcome=Outcome.WOULD_BLOCK)
    per_rule = list(
        blocks.values("rule_id").annotate(
            blocked=Count("pk", filter=enforced),
            would_block=Count("pk", filter=dry),
            deals=Count("lead_id", distinct=True),
        )
    )
    rules = GateRule.objects.select_related("gated_stage").in_bulk([row["rule_id"] for row in per_rule])
    by_rule: dict[int, RuleBlocks] = {}
    for row in per_rule:
        rule = rules[row["rule_id"]]
        by_rule[rule.pk] = RuleBlocks(
            rule_id=rule.pk,
            rule=rule.name,
            stage=rule.gated_stage.name,
            blocked=row["blocked"],
            would_block=row["would_block"],
            deals=row["deals"],
        )
    _time_to_pass(decisions, since, until, by_rule)

    stage_rows: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in per_rule:
        totals = stage_rows[rules[row["rule_id"]].gated_stage.name]
        totals[0] += row["blocked"]
        totals[1] += row["would_block"]
    stage_deals = dict(
        blocks.values("rule__gated_stage__name")
        .annotate(deals=Count("lead_id", distinct=True))
        .values_list("rule__gated_stage__name", "deals")
    )
    stages = [
        GroupBlocks(label=name, blocked=blocked, would_block=would, deals=stage_deals.get(name, 0))
        for name, (blocked, would) in stage_rows.items()
    ]

    per_manager = list(
        blocks.values("lead__responsible_user_kommo_id").annotate(
            blocked=Count("pk", filter=enforced),
            would_block=Count("pk", filter=dry),
            deals=Count("lead_id", distinct=True),
        )
    )
    users = KommoUser.objects.filter(
        kommo_id__in=[row["lead__responsible_user_kommo_id"] for row in per_manager]
    )
    if account is not None:
        users = users.filter(account=account)
    names = dict(users.values_list("kommo_id", "name"))
    managers = sorted(
        (
            GroupBlocks(
                label=names.get(row["lead__responsible_user_kommo_id"] or 0)
                or f"user {row['lead__responsible_user_kommo_id'] or '—'}",
                blocked=row["blocked"],
                would_block=row["would_block"],
                deals=row["deals"],
            )
            for row in per_manager
        ),
        key=lambda group: (-(group.blocked + group.would_block), group.label.casefold()),
    )

    weekly: dict[dt.date, dict[str, int]] = defaultdict(dict)
    by_week = blocks.annotate(week=TruncWeek("decided_at")).values("week", "rule_id").annotate(n=Count("pk"))
    for counted in by_week:
        moment = counted["week"]
        week = moment.date() if isinstance(moment, dt.datetime) else moment
        weekly[week][rules[counted["rule_id"]].name] = counted["n"]

    times: Counter[str] = Counter()
    deals: dict[str, set[int]] = defaultdict(set)
    for lead_id, reasons in blocks.values_list("lead_id", "reasons"):
        for reason in reasons or []:
            condition = missing_condition(str(reason))
            times[condition] += 1
            deals[condition].add(lead_id)
    missing = [
        MissingCondition(condition=condition, times=count, deals=len(deals[condition]))
        for condition, count in sorted(times.items(), key=lambda item: (-item[1], item[0]))
    ]

    return GatesReport(
        weeks=sorted(weekly.items()),
        rules=sorted(by_rule.values(), key=lambda row: (-(row.blocked + row.would_block), row.rule)),
        stages=sorted(stages, key=lambda group: (-(group.blocked + group.would_block), group.label)),
        managers=managers,
        missing=missing,
    )


def _time_to_pass(
    decisions: QuerySet[GateDecision], since: dt.datetime, until: dt.datetime, by_rule: dict[int, RuleBlocks]
) -> None:
    """Fill each rule's passes, still-blocked count and days to pass: the enforced blocks that open an
    episode (no earlier block of the same deal and rule since its last pass) in the period, each closed by
    the next pass of that deal at that rule."""
    blocked_pairs = (
        decisions.filter(outcome=Outcome.BLOCKED, decided_at__gte=since, decided_at__lt=until)
        .order_by()
        .values("lead_id", "rule_id")
        .distinct()
    )
    pairs = {(row["lead_id"], row["rule_id"]) for row in blocked_pairs}
    if not pairs:
        return
    history = (
        decisions.filter(
            outcome__in=(Outcome.BLOCKED, *PASSING),
            lead_id__in={lead for lead, _ in pairs},
            rule_id__in={rule for _, rule in pairs},
        )
        .order_by("lead_id", "rule_id", "decided_at", "pk")
        .values_list("lead_id", "rule_id", "outcome", "decided_at")
    )
    opened: dict[tuple[int, int], dt.datetime] = {}
    for lead_id, rule_id, outcome, at in history:
        key = (lead_id, rule_id)
        if key not in pairs:
            continue
        if outcome == Outcome.BLOCKED:
            opened.setdefault(key, at)
        elif key in opened:
            start = opened.pop(key)
            if since <= start < until and rule_id in by_rule:
                by_rule[rule_id].passed += 1
                by_rule[rule_id].days_to_pass.append((at - start).total_seconds() / DAY)
    for (_, rule_id), start in opened.items():
        if since <= start < until and rule_id in by_rule:
            by_rule[rule_id].still_blocked += 1
