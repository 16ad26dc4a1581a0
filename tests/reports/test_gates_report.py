"""The gates report: blocks per rule, stage, manager and week; conditions most often missing; time to pass."""

from __future__ import annotations

import datetime as dt

import pytest

from apps.gates.models import GateDecision, GateRule
from apps.kommo.models import Lead
from apps.reports.selectors.gates import gates_report, missing_condition, percentile
from tests.reports.desk import NOW, Desk, days_ago, desk

__all__ = ["desk"]
pytestmark = pytest.mark.django_db
Outcome = GateDecision.Outcome
SINCE = days_ago(28)


def test_percentile_interpolates_between_ranks_like_postgresql() -> None:
    assert percentile([], 0.5) is None
    assert percentile([4.0], 0.75) == 4.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.75) == 3.25


def test_a_missing_condition_is_counted_without_the_people_it_names() -> None:
    assert missing_condition("the Lawyer has not approved (Ann: pending)") == "the Lawyer has not approved"
    assert missing_condition("no Lawyer is identified on the deal") == "no Lawyer is identified on the deal"


def test_blocks_per_rule_stage_manager_and_week_in_the_period(desk: Desk) -> None:
    legal = desk.rule("Legal review", name="Lawyer approved")
    budget = desk.rule("Budget approval", (("decision_maker", "approved"),), name="Budget signed off")
    budget.mode = GateRule.Mode.DRY_RUN
    budget.save()
    chris_deal = desk.deal("Chris's", stage="Legal review")
    maria_deal = desk.deal("Maria's", stage="Legal review", manager="maria")
    desk.decision(
        legal, chris_deal, Outcome.BLOCKED, days_ago(20), ["the Lawyer has not approved (Ann: pending)"]
    )
    desk.decision(
        legal, chris_deal, Outcome.BLOCKED, days_ago(13), ["the Lawyer has not approved (Ann: rejected)"]
    )
    desk.decision(legal, maria_deal, Outcome.BLOCKED, days_ago(6), ["no Lawyer is identified on the deal"])
    desk.decision(
        budget,
        maria_deal,
        Outcome.WOULD_BLOCK,
        days_ago(6),
        ["the Decision maker has not approved (Bo: pending)"],
    )
    desk.decision(legal, maria_deal, Outcome.ALLOWED, days_ago(5))
    desk.decision(legal, chris_deal, Outcome.BLOCKED, days_ago(40), ["too old"])  # before the period

    report = gates_report(account=desk.account, since=SINCE, until=NOW)

    assert [(r.rule, r.stage, r.blocked, r.would_block, r.deals) for r in report.rules] == [
        ("Lawyer approved", "Legal review", 3, 0, 2),
        ("Budget signed off", "Budget approval", 0, 1, 1),
    ]
    assert [(s.label, s.blocked, s.would_block, s.deals) for s in report.stages] == [
        ("Legal review", 3, 0, 2),
        ("Budget approval", 0, 1, 1),
    ]
    assert [(m.label, m.blocked, m.would_block, m.deals) for m in report.managers] == [
        ("Chris Novak", 2, 0, 1),
        ("Maria Lopez", 1, 1, 1),
    ]
    assert [(m.condition, m.times, m.deals) for m in report.missing] == [
        ("the Lawyer has not approved", 2, 1),
        ("no Lawyer is identified on the deal", 1, 1),
        ("the Decision maker has not approved", 1, 1),
    ]
    assert sum(sum(counts.values()) for _, counts in report.weeks) == 4
    assert all(week.weekday() == 0 for week, _ in report.weeks)


def test_time_to_pass_runs_from_the_first_block_since_the_last_pass_to_the_next_pass(desk: Desk) -> None:
    rule = desk.rule("Legal review", name="Lawyer approved")
    twice = desk.deal("blocked twice, then passed")
    desk.decision(rule, twice, Outcome.BLOCKED, days_ago(20))
    desk.decision(rule, twice, Outcome.BLOCKED, days_ago(15))
    desk.decision(rule, twice, Outcome.ALLOWED, days_ago(10))  # 10 days after the first block
    desk.decision(rule, twice, Outcome.BLOCKED, days_ago(8))  # a new episode
    desk.decision(rule, twice, Outcome.EXEMPT, days_ago(4))  # 4 days
    waiting = desk.deal("still blocked")
    desk.decision(rule, waiting, Outcome.BLOCKED, days_ago(3))
    late = desk.deal("blocked in the period, passed after it")
    desk.decision(rule, late, Outcome.BLOCKED, days_ago(2))
    desk.decision(rule, late, Outcome.ALLOWED, NOW + dt.timedelta(days=1))  # 3 days

    [row] = gates_report(account=desk.account, since=SINCE, until=NOW).rules

    assert (row.passed, row.still_blocked) == (3, 1)
    assert sorted(row.days_to_pass) == pytest.approx([3.0, 4.0, 10.0])
    assert row.median_days_to_pass == pytest.approx(4.0)
    assert row.p75_days_to_pass == pytest.approx(7.0)


def test_the_report_reads_only_the_deals_it_is_given(desk: Desk) -> None:
    rule = desk.rule("Legal review", name="Lawyer approved")
    mine = desk.deal("mine")
    theirs = desk.deal("theirs", manager="maria")
    desk.decision(rule, mine, Outcome.BLOCKED, days_ago(3))
    desk.decision(rule, theirs, Outcome.BLOCKED, days_ago(3))

    report = gates_report(
        account=desk.account,
        since=SINCE,
        until=NOW,
        leads_qs=Lead.objects.filter(responsible_user_kommo_id=501),
    )

    assert [(m.label, m.blocked) for m in report.managers] == [("Chris Novak", 1)]


@pytest.mark.postgres
def test_postgresqls_window_and_counts_answer_as_the_python_walk(desk: Desk, monkeypatch) -> None:
    from django.db import connection

    legal = desk.rule("Legal review", name="Lawyer approved")
    budget = desk.rule("Budget approval", (("decision_maker", "approved"),), name="Budget signed off")
    earlier, twice, never, two, other = (desk.deal(name) for name in ("earlier", "twice", "never", "2", "o"))
    desk.decision(legal, earlier, Outcome.BLOCKED, days_ago(40), ["no Lawyer (Ann: pending)"])
    desk.decision(legal, earlier, Outcome.BLOCKED, days_ago(20), ["no Lawyer (Ann: pending)"])
    desk.decision(legal, earlier, Outcome.ALLOWED, days_ago(19))  # its episode opened before the period
    desk.decision(legal, twice, Outcome.BLOCKED, days_ago(10), ["no Lawyer (Bo: pending)"])
    desk.decision(legal, twice, Outcome.BLOCKED, days_ago(8), ["no Lawyer"])
    desk.decision(legal, twice, Outcome.EXEMPT, NOW + dt.timedelta(days=2))  # passed after the period
    desk.decision(legal, never, Outcome.BLOCKED, days_ago(3), ["the Lawyer has not approved (Cy: rejected)"])
    desk.decision(budget, never, Outcome.ALLOWED, days_ago(2))  # another rule's pass
    for start in (25, 12):  # two episodes of one deal in the period
        desk.decision(legal, two, Outcome.BLOCKED, days_ago(start), ["no Lawyer"])
        desk.decision(legal, two, Outcome.ALLOWED, days_ago(start - 1.5))
    desk.decision(budget, other, Outcome.WOULD_BLOCK, days_ago(4), ["no Decision maker"])
    desk.decision(budget, other, Outcome.ALLOWED, days_ago(1))

    on_postgresql = gates_report(account=desk.account, since=SINCE, until=NOW)
    monkeypatch.setattr(connection, "vendor", "python walk")
    walked = gates_report(account=desk.account, since=SINCE, until=NOW)
    monkeypatch.undo()

    assert on_postgresql == walked
    [legal_row, budget_row] = on_postgresql.rules
    assert (legal_row.blocked, legal_row.passed, legal_row.still_blocked) == (6, 3, 1)
    assert sorted(legal_row.days_to_pass) == pytest.approx([1.5, 1.5, 12.0])
    assert (budget_row.would_block, budget_row.passed, budget_row.still_blocked) == (1, 0, 0)
    assert [(m.condition, m.times, m.deals) for m in on_postgresql.missing] == [
        ("no Lawyer", 5, 3),
        ("no Decision maker", 1, 1),
        ("the Lawyer has not approved", 1, 1),
    ]
    empty = gates_report(account=desk.account, since=NOW, until=NOW + dt.timedelta(days=1))
    assert (empty.rules, empty.weeks, empty.missing) == ([], [], [])


@pytest.mark.parametrize("counted_by", ["database", "python walk"])
def test_a_condition_worded_before_and_after_roles_were_lowered_mid_sentence_is_one(
    desk: Desk, monkeypatch, counted_by: str
) -> None:
    from django.db import connection

    legal = desk.rule("Legal review", name="Lawyer approved")
    old, new = desk.deal("decided before"), desk.deal("decided after")
    desk.decision(legal, old, Outcome.BLOCKED, days_ago(9), ["the Lawyer has not approved (Ann: pending)"])
    desk.decision(legal, new, Outcome.BLOCKED, days_ago(2), ["the lawyer has not approved (Bo: pending)"])
    desk.decision(legal, new, Outcome.BLOCKED, days_ago(1), ["the CFO has not approved (Cy: pending)"])
    if counted_by == "python walk":
        monkeypatch.setattr(connection, "vendor", "python walk")

    report = gates_report(account=desk.account, since=SINCE, until=NOW)

    assert [(m.condition, m.times, m.deals) for m in report.missing] == [
        ("the lawyer has not approved", 2, 2),
        ("the CFO has not approved", 1, 1),
    ]
