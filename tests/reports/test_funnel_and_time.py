import pytest

from apps.reports.sql import percentile
from tests.reports.support import (
    BOB,
    BUDGET,
    DM,
    LEGAL,
    LOST,
    SIGNING,
    TECH,
    WON,
    day,
    deal_create,
    html_table,
    person,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(world):
    # 1: created in DM in April, to Tech on 11 April, to Budget 21 April, won 1 May.
    deal_create(
        world,
        price=100,
        created=day(4, 1),
        moves=[(DM, TECH, day(4, 11)), (TECH, BUDGET, day(4, 21)), (BUDGET, WON, day(5, 1))],
    )
    # 2: DM → Tech (4 days), back to DM (2 days), Tech again and still there: re-entered stages.
    deal_create(
        world,
        price=200,
        created=day(4, 2),
        moves=[(DM, TECH, day(4, 6)), (TECH, DM, day(4, 8)), (DM, TECH, day(4, 10))],
        manager=BOB,
    )
    # 3: a skip from DM to Legal review, lost from the middle after 5 days.
    lost = [(DM, LEGAL, day(4, 13)), (LEGAL, LOST, day(4, 18))]
    deal_create(world, price=300, created=day(4, 3), moves=lost)
    # 4: from last quarter: entered DM in March, moved to Tech in April (its DM stay ends in this period).
    deal_create(world, price=400, created=day(3, 1), moves=[(DM, TECH, day(4, 1))])
    # 5: moved back by a gate from Signing to Legal review and left there.
    deal_create(
        world,
        price=500,
        created=day(4, 20),
        moves=[(DM, LEGAL, day(4, 21)), (LEGAL, SIGNING, day(4, 25)), (SIGNING, LEGAL, day(4, 25, 13))],
    )
    return world


def table(client, slug, key="stages", query=""):
    client.force_login(person("head", "Head of sales"))
    response = client.get(f"/reports/{slug}/{query}")
    assert response.status_code == 200
    return html_table(response.content.decode(), key)


def test_the_funnel_counts_each_deal_entering_a_stage_once_and_how_many_went_on(client, history, frozen):
    assert table(client, "funnel") == [
        ["Stage", "Entered", "Went on", "To next stage (%)", "Won", "To won (%)"],
        # DM: deals 1, 2 (twice), 3, 5 entered in the period (4 entered in March); went on: 1, 2, 3, 5.
        ["DM qualification", "4", "4", "100.0", "1", "25.0"],
        # Tech: 1, 2 (twice), 4; went on: 1 only (2 went back, then stays; 4 stays).
        ["Technical validation", "3", "1", "33.3", "1", "33.3"],
        ["Budget approval", "1", "1", "100.0", "1", "100.0"],
        # Legal: 3 (lost from it), 5 (twice: forward, then back from Signing); went on: 5.
        ["Legal review", "2", "1", "50.0", "0", "0.0"],
        ["Signing", "1", "0", "0.0", "0", "0.0"],
        ["Won", "1", "", "", "1", "100.0"],
    ]


def test_the_funnel_of_last_quarter_holds_only_what_entered_then(client, history, frozen):
    assert table(client, "funnel", query="?period=last_quarter")[1:] == [
        ["DM qualification", "1", "1", "100.0", "0", "0.0"]
    ]


def test_time_in_stage_is_median_and_p75_of_completed_stays_and_the_age_of_open_ones(client, history, frozen):
    rows = {row[0]: row[1:] for row in table(client, "time-in-stage")[1:]}

    # DM stays that ended in the period: 10 (deal 1), 4 and 2 (deal 2), 10 (deal 3), 31 (deal 4), 1 (deal 5).
    dm = [10, 4, 2, 10, 31, 1]
    assert rows["DM qualification"][:3] == ["6", f"{percentile(dm, 0.5):.1f}", f"{percentile(dm, 0.75):.1f}"]
    # Cumulative: deal 2's second DM stay counts 4 + 2 = 6 days.
    assert rows["DM qualification"][3] == f"{percentile([10, 4, 6, 10, 31, 1], 0.5):.1f}"
    # Tech: completed 10 (deal 1) and 2 (deal 2); open (to 15 May noon): deal 2 since 10 April, deal 4 since
    # 1 April.
    assert rows["Technical validation"] == ["2", "6.0", "8.0", "6.0", "2", "39.5", "44.0"]
    # Legal: completed 5 (deal 3, lost) and 4 (deal 5, forward); open: deal 5 since 25 April 13:00.
    assert rows["Legal review"][:3] == ["2", "4.5", "4.8"]
    assert rows["Legal review"][4:] == ["1", "20.0", "20.0"]


def test_the_filters_change_the_figures(client, history, world, frozen):
    only_bob = table(client, "time-in-stage", query=f"?manager={world.bob.pk}")

    assert [row[0] for row in only_bob[1:]] == ["DM qualification", "Technical validation"]
    assert only_bob[1][1] == "2"


def test_the_cumulative_time_counts_a_deals_earlier_stays_in_the_stage_before_the_period(
    client, world, frozen
):
    # In DM from 1 March to 11 March (last quarter), in Tech until 21 March, back in DM until 24 April:
    # its DM stay ending in the period is 34 days, its cumulative time in DM 10 + 34 = 44.
    deal_create(
        world,
        price=100,
        created=day(3, 1),
        moves=[(DM, TECH, day(3, 11)), (TECH, DM, day(3, 21)), (DM, BUDGET, day(4, 24))],
    )
    # Created in DM in April and still there: an open stay, not a completed one.
    deal_create(world, price=200, created=day(4, 5))

    rows = {row[0]: row[1:] for row in table(client, "time-in-stage")[1:]}

    assert rows["DM qualification"] == ["1", "34.0", "34.0", "44.0", "1", "40.0", "40.0"]
    assert "Technical validation" not in rows  # its only stay ended last quarter


def test_a_period_with_no_stays_shows_no_stage(client, world, frozen):
    deal_create(world, price=100, created=day(4, 1), moves=[(DM, TECH, day(4, 11))])

    assert table(client, "time-in-stage", query="?period=custom&start=2025-01-01&end=2025-01-31")[1:] == []


def test_the_cumulative_median_is_the_live_sum_of_each_deals_earlier_stays_with_moves_out_of_order_and_twice(
    world,
):
    import datetime as dt

    from django.db.models import OuterRef, Subquery, Sum

    from apps.kommo.models import StageStay
    from apps.reports.framework import Scope
    from apps.reports.selectors.time_in_stage import time_in_stage
    from apps.reports.sql import DaysBetween
    from tests.reports.support import NOW

    # Back and forth between DM and Tech, reported out of order and one move twice.
    moves = [
        (DM, TECH, day(3, 25)),
        (TECH, DM, day(4, 5)),
        (DM, TECH, day(4, 9)),
        (TECH, DM, day(4, 20)),
        (DM, TECH, day(4, 22)),
        (TECH, BUDGET, day(5, 1)),
    ]
    reported = [moves[2], moves[0], moves[4], moves[1], moves[3], moves[0], moves[5]]
    deal_create(world, price=1, created=day(3, 20), moves=reported)
    deal_create(
        world,
        price=1,
        created=day(3, 1),
        moves=[
            (DM, TECH, day(3, 10)),
            (TECH, DM, day(4, 3)),
            (DM, TECH, day(4, 7)),
            (TECH, LEGAL, day(4, 30)),
        ],
    )
    deal_create(world, price=1, created=day(4, 2), moves=[(DM, TECH, day(4, 4)), (TECH, LOST, day(4, 14))])
    start, end = dt.datetime(2026, 4, 1, tzinfo=dt.UTC), dt.datetime(2026, 7, 1, tzinfo=dt.UTC)

    # The live computation the column replaced: each completed stay of the period plus the deal's stays
    # in the same stage that ended before it, summed by the database.
    earlier = (
        StageStay.objects.filter(
            lead_id=OuterRef("lead_id"),
            status_kommo_id=OuterRef("status_kommo_id"),
            pipeline_kommo_id=OuterRef("pipeline_kommo_id"),
            left_at__lte=OuterRef("left_at"),
        )
        .order_by()
        .values("status_kommo_id")
        .annotate(total=Sum(DaysBetween("left_at", "entered_at")))
        .values("total")[:1]
    )
    live: dict[str, list[float]] = {}
    for stage, cumulative in (
        StageStay.objects.filter(left_at__gte=start, left_at__lt=end)
        .exclude(status_kommo_id__in=[WON, LOST])
        .annotate(cumulative=Subquery(earlier))
        .values_list("status__name", "cumulative")
    ):
        live.setdefault(stage, []).append(cumulative)
    rows = {row.stage: row for row in time_in_stage(scope=Scope(start=start, end=end, now=NOW))}

    # Tech: the first deal 11, 11 + 11, 22 + 9 days; the second 24, 24 + 23; the third 10.
    assert sorted(live["Technical validation"]) == pytest.approx([10.0, 11.0, 22.0, 24.0, 31.0, 47.0])
    for stage, values in live.items():
        assert rows[stage].cumulative_median == pytest.approx(percentile(values, 0.5), abs=1e-9), stage
