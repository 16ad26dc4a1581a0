"""Decision-maker coverage: the current shares, the weekly snapshots (beat) and their backfill from stays."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command

from apps.kommo.models import Lead
from apps.reports import tasks
from apps.reports.coverage_snapshots import (
    coverage_snapshot_take,
    coverage_snapshots_backfill,
    week_start,
)
from apps.reports.models import CoverageSnapshot
from apps.reports.selectors.coverage import (
    coverage_by_manager,
    coverage_by_stage,
    coverage_total,
    coverage_trend,
)
from tests.reports.desk import NOW, Desk, days_ago, desk, make_desk

__all__ = ["desk"]
pytestmark = pytest.mark.django_db


def committee(desk: Desk) -> dict[str, Lead]:
    """Four open deals and a won one:
    - none: no decision maker (a user only), 10k, Technical validation, Chris;
    - pending: a decision maker who has not approved, 20k, Technical validation, Chris;
    - approved: a decision maker who approved (and one who has not), 30k, Legal review, Maria;
    - empty: no stakeholder at all, 40k, Legal review, Maria."""
    none = desk.deal("none", price=10_000)
    desk.stakeholder(none, "user")
    pending = desk.deal("pending", price=20_000)
    desk.stakeholder(pending, "decision_maker", approval="pending")
    approved = desk.deal("approved", price=30_000, stage="Legal review", manager="maria")
    desk.stakeholder(approved, "decision_maker", approval="approved")
    desk.stakeholder(approved, "decision_maker", approval="rejected")
    empty = desk.deal("empty", price=40_000, stage="Legal review", manager="maria")
    won = desk.deal("won", price=99_000, stage="Closed - won")  # closed: not counted
    return {"none": none, "pending": pending, "approved": approved, "empty": empty, "won": won}


def figures(coverage) -> tuple:
    return (
        coverage.label,
        coverage.deals,
        coverage.value,
        coverage.without_dm,
        coverage.without_dm_value,
        coverage.dm_approved,
        coverage.dm_approved_value,
    )


def test_shares_of_open_deals_without_a_decision_maker_and_with_one_who_approved(desk: Desk) -> None:
    committee(desk)

    by_stage = coverage_by_stage(account=desk.account)
    total = coverage_total(by_stage)

    assert [figures(row) for row in by_stage] == [
        ("Technical validation", 2, 30_000, 1, 10_000, 0, 0),
        ("Legal review", 2, 70_000, 1, 40_000, 1, 30_000),
    ]
    assert figures(total) == ("All open deals", 4, 100_000, 2, 50_000, 1, 30_000)
    assert (total.without_dm_share, total.without_dm_value_share) == (0.5, 0.5)
    assert (total.dm_approved_share, total.dm_approved_value_share) == (0.25, 0.3)
    assert [figures(row) for row in coverage_by_manager(account=desk.account)] == [
        ("Chris Novak", 2, 30_000, 1, 10_000, 0, 0),
        ("Maria Lopez", 2, 70_000, 1, 40_000, 1, 30_000),
    ]


def test_coverage_reads_only_the_deals_it_is_given(desk: Desk) -> None:
    deals = committee(desk)
    make_desk("Other", kommo_id=2).deal("elsewhere")

    mine = Lead.objects.filter(pk__in=[deals["none"].pk, deals["approved"].pk])
    total = coverage_total(coverage_by_stage(account=desk.account, leads_qs=mine))

    assert figures(total) == ("All open deals", 2, 40_000, 1, 10_000, 1, 30_000)


def test_the_weekly_snapshot_replaces_its_own_week_and_never_touches_another(desk: Desk) -> None:
    deals = committee(desk)
    monday = week_start(NOW)

    coverage_snapshot_take(account=desk.account, now=NOW - dt.timedelta(days=7))
    coverage_snapshot_take(account=desk.account, now=NOW)
    coverage_snapshot_take(account=desk.account, now=NOW)  # again in the same week: nothing added
    desk.stakeholder(deals["empty"], "decision_maker", approval="approved")
    later = NOW + dt.timedelta(hours=30)
    assert week_start(later) == monday
    coverage_snapshot_take(account=desk.account, now=later)

    trend = coverage_trend(account=desk.account, since=monday - dt.timedelta(days=7), until=monday)
    assert [figures(week) for week in trend] == [
        (f"{monday - dt.timedelta(days=7):%Y-%m-%d}", 4, 100_000, 2, 50_000, 1, 30_000),
        (f"{monday:%Y-%m-%d}", 4, 100_000, 1, 10_000, 2, 70_000),
    ]
    assert CoverageSnapshot.objects.filter(week=monday).count() == 2  # one row per stage and manager here


def test_the_trend_filters_by_pipeline_and_manager(desk: Desk) -> None:
    committee(desk)
    coverage_snapshot_take(account=desk.account, now=NOW)
    monday = week_start(NOW)

    [maria] = coverage_trend(
        account=desk.account, since=monday, until=monday, responsible_user_kommo_ids=[502]
    )
    assert (maria.deals, maria.value) == (2, 70_000)
    assert coverage_trend(account=desk.account, since=monday, until=monday, pipeline_kommo_ids=[9]) == []


def test_the_backfill_rebuilds_past_weeks_from_the_stays_and_the_decision_makers_creation(desk: Desk) -> None:
    """Three weeks back: "late" entered legal review two weeks ago and its decision maker's contact was
    created ten days ago; "closed" was open until it was won twelve days ago."""
    late = desk.deal("late", price=5_000, stage="Legal review", entered_days_ago=None)
    desk.stay(late, "Technical validation", entered=days_ago(30), left=days_ago(14))
    desk.stay(late, "Legal review", entered=days_ago(14))
    desk.stakeholder(late, "decision_maker", approval="approved", contact_created=days_ago(10))
    closed = desk.deal("closed", price=7_000, stage="Closed - won", entered_days_ago=None)
    desk.stay(closed, "Technical validation", entered=days_ago(40), left=days_ago(12))
    desk.stay(closed, "Closed - won", entered=days_ago(12))
    this_week = week_start(NOW)

    written = coverage_snapshots_backfill(account=desk.account, weeks=3, now=NOW)

    assert [week for week, _ in written] == [this_week - dt.timedelta(weeks=n) for n in (3, 2, 1)]
    trend = coverage_trend(account=desk.account, since=this_week - dt.timedelta(weeks=3), until=this_week)
    ends = [dt.datetime.combine(week.key + dt.timedelta(days=7), dt.time(), tzinfo=dt.UTC) for week in trend]
    expected = []
    for end in ends:
        late_open = end > days_ago(30)
        closed_open = days_ago(40) < end <= days_ago(12)
        late_has_dm = end > days_ago(10)
        deals = late_open + closed_open
        without = (late_open and not late_has_dm) + closed_open
        expected.append((deals, without, None))
    assert [(week.deals, week.without_dm, week.dm_approved) for week in trend] == expected
    assert all(row.backfilled for row in CoverageSnapshot.objects.all())

    assert coverage_snapshots_backfill(account=desk.account, weeks=3, now=NOW) == []  # nothing new
    assert len(coverage_snapshots_backfill(account=desk.account, weeks=3, now=NOW, replace=True)) == 3


def test_the_backfill_leaves_weeks_with_a_live_snapshot_alone(desk: Desk) -> None:
    committee(desk)
    last_week = NOW - dt.timedelta(days=7)
    coverage_snapshot_take(account=desk.account, now=last_week)
    live = list(CoverageSnapshot.objects.values_list("pk", flat=True))

    written = coverage_snapshots_backfill(account=desk.account, weeks=2, now=NOW, replace=True)

    assert [week for week, _ in written] == [week_start(NOW) - dt.timedelta(weeks=2)]
    assert set(live) <= set(CoverageSnapshot.objects.values_list("pk", flat=True))


def test_the_beat_task_snapshots_every_account_and_the_command_backfills(desk: Desk, time_machine) -> None:
    time_machine.move_to(NOW)
    committee(desk)
    desk.deal("open for a month", entered_days_ago=30)  # in the same group as "none" and "pending"
    other = make_desk("Other", kommo_id=2)
    other.deal("elsewhere")

    assert tasks.coverage_snapshot() == 3
    assert tasks.coverage_snapshot() == 3
    assert CoverageSnapshot.objects.count() == 3

    CoverageSnapshot.objects.all().delete()
    out = io.StringIO()
    call_command("reports_coverage_backfill", "--weeks", "2", "--this-week", stdout=out)
    assert "this week's snapshot, 2 rows" in out.getvalue()
    assert set(CoverageSnapshot.objects.values_list("week", flat=True)) == {
        week_start(NOW) - dt.timedelta(weeks=n) for n in (0, 1, 2)
    }


def test_the_weekly_snapshot_is_on_the_beat_schedule(settings) -> None:
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert tasks.coverage_snapshot.name in scheduled


def test_with_a_stakeholder_history_the_backfill_reads_each_week_s_roles_and_approvals_from_it(
    desk: Desk,
) -> None:
    """The decision maker's contact is a year old, but the history says they were given the role eight
    days ago and approved three days ago: the weeks before show no decision maker, the last one an
    approval, which the history can tell (no "—")."""
    from apps.stakeholders.models import Role, StakeholderEvent

    deal = desk.deal("slow", price=9_000, stage="Legal review", entered_days_ago=30)
    person = desk.stakeholder(deal, "decision_maker", approval="approved", contact_created=days_ago(365))
    buyer = Role.objects.get(code="decision_maker").pk

    def event(field: str, new: object, days: float) -> None:
        StakeholderEvent.objects.create(
            account=desk.account,
            lead=deal,
            stakeholder_id=person.pk,
            name="Dana",
            field=field,
            new=new,
            at=days_ago(days),
            source="sync",
        )

    event("presence", "Dana", 20)
    event("role", buyer, 8)
    event("approval_status", "approved", 3)
    this_week = week_start(NOW)

    coverage_snapshots_backfill(account=desk.account, weeks=3, now=NOW)

    trend = coverage_trend(account=desk.account, since=this_week - dt.timedelta(weeks=3), until=this_week)
    ends = [dt.datetime.combine(week.key + dt.timedelta(days=7), dt.time(), tzinfo=dt.UTC) for week in trend]
    expected = [(1, int(end <= days_ago(8)), int(end > days_ago(3))) for end in ends]
    assert [(week.deals, week.without_dm, week.dm_approved) for week in trend] == expected
    assert {row[1] for row in expected} == {0, 1}  # the weeks differ: the trend is not flat
