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

The period's blocks are read once and counted in Python (a quarter's blocks are thousands of rows; one
read instead of one aggregate per table, each paying for the deals' filter); the time to pass is a window
query over the decisions of the blocked deals at those rules (a Python walk on SQLite).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncWeek

from apps.gates.models import GateDecision, GateRule
from apps.kommo.models import KommoAccount, KommoUser, Lead
from apps.reports.selectors.common import deals_from_first

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


def _decisions(
    account: KommoAccount | None, leads_qs: QuerySet[Lead] | None, deals: Q | None = None
) -> QuerySet[GateDecision]:
    decisions = GateDecision.objects.all()
    if account is not None:
        decisions = decisions.filter(account=account)
    if leads_qs is not None:
        decisions = decisions.filter(lead__in=leads_qs.values("pk"))
    if deals is not None:
        decisions = decisions.filter(deals)
    return decisions


# Each reason of the blocks (``{blocks}``: Django's query of them) without the names in brackets at its
# end, as missing_condition: how often, and on how many deals. Reasons that differ only in case are one
# condition, named by the form with the fewest capitals (the last in byte order): decisions recorded before
# roles were written in lower case mid-sentence say "the Lawyer has not approved", later ones "the lawyer
# has not approved".
_MISSING = r"""
SELECT max(m.condition COLLATE "C"), count(*), count(DISTINCT m.lead_id)
FROM (
    SELECT b.lead_id, btrim(regexp_replace(r.reason, '\s*\([^()]*\)\s*$', '')) AS condition
    FROM ({blocks}) b CROSS JOIN LATERAL jsonb_array_elements_text(b.reasons) AS r(reason)
) m
GROUP BY lower(m.condition)
"""


def _missing(blocks: QuerySet[GateDecision]) -> list[MissingCondition]:
    """The conditions the ``blocks`` recorded as missing, most frequent first: counted by PostgreSQL, or in
    Python elsewhere."""
    times: Counter[str] = Counter()
    deals: dict[str, set[int]] = defaultdict(set)
    named: dict[str, str] = {}
    found: list[tuple[str, int, int]] = []
    if connection.vendor == "postgresql":
        sql, params = blocks.values("lead_id", "reasons").query.sql_with_params()
        with connection.cursor() as cursor:
            # The inner query is Django's own, its values passed as parameters.
            cursor.execute(_MISSING.format(blocks=sql), params)
            found = [(condition, count, leads) for condition, count, leads in cursor.fetchall()]
    else:
        for lead_id, reasons in blocks.values_list("lead_id", "reasons"):
            for reason in reasons or []:
                condition = missing_condition(str(reason))
                key = condition.lower()
                named[key] = max(named.get(key, condition), condition)
                times[key] += 1
                deals[key].add(lead_id)
        found = [(named[key], count, len(deals[key])) for key, count in times.items()]
    return [
        MissingCondition(condition=condition, times=count, deals=leads)
        for condition, count, leads in sorted(found, key=lambda item: (-item[1], item[0]))
    ]


def gates_report(
    *,
    account: KommoAccount | None,
    since: dt.datetime,
    until: dt.datetime,
    leads_qs: QuerySet[Lead] | None = None,
    deals: Q | None = None,
) -> GatesReport:
    """The blocks decided in ``[since, until)`` on the deals among ``leads_qs`` (or those ``deals``, a filter
    on the decisions' deals such as ``Scope.deals("lead__", join=False)``, which does not list them), of
    ``account`` (every account when None).

    The period's blocks are read once (rule, outcome, deal, its manager) and counted per rule, stage and
    manager; weeks and missing conditions are counted by the database; the time to pass is one windowed
    query."""
    decisions = _decisions(account, leads_qs, deals)
    period = decisions.filter(outcome__in=BLOCKING, decided_at__gte=since, decided_at__lt=until).order_by()
    blocks = list(
        period.annotate(deal=deals_from_first(period)).values_list(
            "rule_id", "outcome", "lead_id", "deal__responsible_user_kommo_id"
        )
    )
    rules = GateRule.objects.select_related("gated_stage").in_bulk({row[0] for row in blocks})
    by_rule: dict[int, RuleBlocks] = {}
    rule_deals: dict[int, set[int]] = defaultdict(set)
    stage_deals: dict[str, set[int]] = defaultdict(set)
    stage_rows: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    manager_rows: dict[int | None, list[int]] = defaultdict(lambda: [0, 0])
    manager_deals: dict[int | None, set[int]] = defaultdict(set)
    for rule_id, outcome, lead_id, manager in blocks:
        rule = rules[rule_id]
        row = by_rule.get(rule_id)
        if row is None:
            row = by_rule[rule_id] = RuleBlocks(rule_id=rule.pk, rule=rule.name, stage=rule.gated_stage.name)
        enforced = outcome == Outcome.BLOCKED
        index = 0 if enforced else 1
        if enforced:
            row.blocked += 1
        else:
            row.would_block += 1
        rule_deals[rule_id].add(lead_id)
        stage_rows[rule.gated_stage.name][index] += 1
        stage_deals[rule.gated_stage.name].add(lead_id)
        manager_rows[manager][index] += 1
        manager_deals[manager].add(lead_id)
    for rule_id, row in by_rule.items():
        row.deals = len(rule_deals[rule_id])
    _time_to_pass(decisions, since, until, by_rule)

    stages = [
        GroupBlocks(label=name, blocked=blocked, would_block=would, deals=len(stage_deals[name]))
        for name, (blocked, would) in stage_rows.items()
    ]
    users = KommoUser.objects.filter(kommo_id__in=[key for key in manager_rows if key is not None])
    if account is not None:
        users = users.filter(account=account)
    names = dict(users.values_list("kommo_id", "name"))
    managers = sorted(
        (
            GroupBlocks(
                label=names.get(manager or 0) or f"user {manager or '—'}",
                blocked=blocked,
                would_block=would,
                deals=len(manager_deals[manager]),
            )
            for manager, (blocked, would) in manager_rows.items()
        ),
        key=lambda group: (-(group.blocked + group.would_block), group.label.casefold()),
    )
    weekly: dict[dt.date, dict[str, int]] = defaultdict(dict)
    by_week = period.annotate(week=TruncWeek("decided_at")).values("week", "rule_id").annotate(n=Count("pk"))
    for counted in by_week:
        moment = counted["week"]
        week = moment.date() if isinstance(moment, dt.datetime) else moment
        weekly[week][rules[counted["rule_id"]].name] = counted["n"]
    missing = _missing(period)

    return GatesReport(
        weeks=sorted(weekly.items()),
        rules=sorted(by_rule.values(), key=lambda row: (-(row.blocked + row.would_block), row.rule)),
        stages=sorted(stages, key=lambda group: (-(group.blocked + group.would_block), group.label)),
        managers=managers,
        missing=missing,
    )


# The deals and rules blocked in the period (``{blocked}``: Django's query of those blocks), every
# decision of theirs at those rules, and each block with the outcome of the deal's previous decision at the
# rule (blocks and passes only) and its next pass: a block opens an episode when nothing or a pass came
# before it, and its next pass closes it.
_EPISODES = """
WITH pairs AS MATERIALIZED (SELECT DISTINCT b.lead_id, b.rule_id FROM ({blocked}) b)
SELECT w.rule_id, EXTRACT(EPOCH FROM (w.passed_at - w.decided_at)) / 86400.0
FROM (
    SELECT d.rule_id, d.outcome, d.decided_at,
        lag(d.outcome) OVER deal_rule AS before,
        min(d.decided_at) FILTER (WHERE d.outcome IN (%s, %s)) OVER (
            deal_rule ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING
        ) AS passed_at
    FROM {decisions} d JOIN pairs p ON p.lead_id = d.lead_id AND p.rule_id = d.rule_id
    WHERE d.outcome IN (%s, %s, %s)
    WINDOW deal_rule AS (PARTITION BY d.lead_id, d.rule_id ORDER BY d.decided_at, d.id)
) w
WHERE w.outcome = %s AND (w.before IS NULL OR w.before IN (%s, %s))
    AND w.decided_at >= %s AND w.decided_at < %s
"""


def _time_to_pass(
    decisions: QuerySet[GateDecision], since: dt.datetime, until: dt.datetime, by_rule: dict[int, RuleBlocks]
) -> None:
    """Fill each rule's passes, still-blocked count and days to pass: the enforced blocks that open an
    episode (no earlier block of the same deal and rule since its last pass) in the period, each closed by
    the next pass of that deal at that rule.

    On PostgreSQL a window over the decisions of the deals and rules blocked in the period finds each
    opening block and its next pass; elsewhere the same walk is done in Python."""
    blocked = decisions.filter(outcome=Outcome.BLOCKED, decided_at__gte=since, decided_at__lt=until)
    if connection.vendor == "postgresql":
        sql, params = blocked.order_by().values("lead_id", "rule_id").query.sql_with_params()
        query = _EPISODES.format(blocked=sql, decisions=GateDecision._meta.db_table)
        with connection.cursor() as cursor:
            # The inner query is Django's own, its values passed as parameters.
            cursor.execute(
                query,
                [*params, *PASSING, Outcome.BLOCKED, *PASSING, Outcome.BLOCKED, *PASSING, since, until],
            )
            for rule_id, days in cursor.fetchall():
                if rule_id not in by_rule:
                    continue
                if days is None:
                    by_rule[rule_id].still_blocked += 1
                else:
                    by_rule[rule_id].passed += 1
                    by_rule[rule_id].days_to_pass.append(float(days))
        return
    history = decisions.filter(
        outcome__in=(Outcome.BLOCKED, *PASSING),
        lead_id__in=blocked.values("lead_id"),
        rule_id__in=blocked.values("rule_id"),
    )
    opened: dict[tuple[int, int], dt.datetime] = {}
    rows = history.order_by("lead_id", "rule_id", "decided_at", "pk").values_list(
        "lead_id", "rule_id", "outcome", "decided_at"
    )
    for lead_id, rule_id, outcome, at in rows:
        key = (lead_id, rule_id)
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
