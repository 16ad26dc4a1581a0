"""The forecast: its formulas on known answers (prior, cohort window, committee factor, accuracy with A = 0),
snapshots that cannot change, a reproducible backtest, and the page."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.test import override_settings

from apps.kommo.models import Contact
from apps.reports import forecast_method as fm
from apps.reports import tasks
from apps.reports.forecast_snapshots import (
    forecast_backtest,
    forecast_compute,
    forecast_snapshot_take,
    history_load,
    snapshot_rows,
)
from apps.reports.framework import Scope
from apps.reports.models import ForecastCategory, ForecastSnapshot, ForecastSnapshotDeal
from apps.reports.selectors.forecast import closed_quarters, forecast_accuracy, forecast_history
from apps.stakeholders.models import FieldMapping, Role, Stakeholder
from tests.reports.support import (
    BOB,
    BUDGET,
    DM,
    LEGAL,
    LOST,
    NOW,
    PIPELINE,
    SIGNING,
    TECH,
    WON,
    World,
    deal_create,
    html_table,
    person,
)

pytestmark = pytest.mark.django_db


def at(year: int, month: int, day: int) -> dt.datetime:
    return dt.datetime(year, month, day, 12, 0, tzinfo=dt.UTC)


# -- the formulas -------------------------------------------------------------------------------------------


def test_the_prior_spreads_the_open_stages_evenly_between_0_and_1() -> None:
    assert [fm.stage_prior(rank=rank, stages=5) for rank in range(1, 6)] == [
        1 / 6,
        2 / 6,
        3 / 6,
        4 / 6,
        5 / 6,
    ]
    with pytest.raises(ValueError):
        fm.stage_prior(rank=6, stages=5)


def test_p_is_the_prior_without_closed_deals_the_measured_rate_from_20_and_between_them_in_between() -> None:
    assert fm.stage_p(won=0, lost=0, prior=0.25, min_closed=20) == 0.25
    # 5 closed (4 won): (4 + 15 x 0.25) ÷ 20
    assert fm.stage_p(won=4, lost=1, prior=0.25, min_closed=20) == pytest.approx((4 + 15 * 0.25) / 20)
    assert fm.stage_p(won=6, lost=14, prior=0.9, min_closed=20) == pytest.approx(0.3)
    assert fm.stage_p(won=19, lost=0, prior=0.0, min_closed=20) == pytest.approx(0.95)  # no jump at 20


def test_the_committee_factor_compares_the_state_s_win_rate_with_the_stage_s_and_needs_5_deals() -> None:
    # the stage: 10 won of 20 (50 %); deals with a decision maker: 8 won of 10 (80 %)
    assert fm.committee_factor(
        won_in_state=8, closed_in_state=10, won_all=10, closed_all=20
    ) == pytest.approx(1.6)
    assert fm.committee_factor(
        won_in_state=2, closed_in_state=10, won_all=10, closed_all=20
    ) == pytest.approx(0.4)
    assert fm.committee_factor(won_in_state=4, closed_in_state=4, won_all=10, closed_all=20) == 1.0
    assert fm.committee_factor(won_in_state=0, closed_in_state=10, won_all=0, closed_all=20) == 1.0
    assert fm.p_adjusted(p=0.8, factor=1.6) == 1.0


def test_accuracy_error_bias_and_wape_and_a_quarter_with_nothing_won_divides_by_nothing() -> None:
    result = fm.accuracy_of(actual=400, forecast=500)
    assert (result.error, result.accuracy, result.bias) == (0.25, 0.75, 0.25)
    assert fm.accuracy_of(actual=100, forecast=300).accuracy == 0.0  # error 200 %: accuracy floors at 0
    nothing = fm.accuracy_of(actual=0, forecast=300)
    assert nothing.actual_is_zero and (nothing.error, nothing.accuracy, nothing.bias) == (None, None, None)
    # Σ|A - F| ÷ ΣA: the empty quarter adds its 300 to the errors, nothing to the won value
    assert fm.wape([(400, 500), (0, 300)]) == pytest.approx(1.0)
    assert fm.wape([(0, 300)]) is None
    assert fm.mean([None, 0.2, 0.4]) == pytest.approx(0.3)


def test_months_before_keeps_the_day_or_takes_the_last_one_of_a_shorter_month() -> None:
    assert fm.months_before(at(2026, 5, 15), 6) == at(2025, 11, 15)
    assert fm.months_before(at(2026, 5, 31), 18) == at(2024, 11, 30)
    assert fm.months_before(at(2026, 3, 31), 1) == at(2026, 2, 28)


# -- on constructed histories -------------------------------------------------------------------------------


def _stage(computed, kommo_id):
    return next(stage for stage in computed.stages if stage.kommo_id == kommo_id)


@override_settings(REPORTS_FORECAST_MIN_CLOSED=4)
def test_the_cohort_is_the_deals_that_entered_the_stage_6_to_18_months_before_and_closed_by_then(
    world: World,
) -> None:
    # In the window (entered technical validation 7 to 17 months before NOW): 3 won, 1 lost, 1 still open.
    for entered, outcome in ((at(2025, 10, 1), WON), (at(2025, 6, 1), WON), (at(2025, 1, 1), WON)):
        deal_create(
            world,
            price=100,
            created=entered,
            start=TECH,
            moves=[(TECH, outcome, entered + dt.timedelta(days=20))],
        )
    deal_create(world, price=100, created=at(2025, 9, 1), start=TECH, moves=[(TECH, LOST, at(2025, 9, 5))])
    deal_create(world, price=100, created=at(2025, 9, 1), start=TECH, moves=[(TECH, BUDGET, at(2025, 9, 30))])
    # Outside it: too recent (5 months), too old (19 months), and a deal won after the forecast's date.
    deal_create(world, price=100, created=at(2025, 12, 20), start=TECH, moves=[(TECH, LOST, at(2026, 1, 2))])
    deal_create(world, price=100, created=at(2024, 10, 1), start=TECH, moves=[(TECH, LOST, at(2024, 10, 9))])
    late = deal_create(
        world, price=100, created=at(2025, 8, 1), start=TECH, moves=[(TECH, WON, at(2026, 6, 1))]
    )

    computed = forecast_compute(
        history=history_load(account=world.account), pipeline_kommo_id=PIPELINE, at=NOW, live=False
    )

    tech = _stage(computed, TECH)
    assert (tech.won, tech.lost) == (3, 1)  # the late one was still open on NOW: left out
    assert tech.p == pytest.approx(0.75)
    assert tech.remaining_days == pytest.approx(20)  # each won 20 days after entering
    assert late.pk in {deal.deal.pk for deal in computed.deals}  # and it is open in the forecast
    # Budget approval has one deal of the window that is still open there: no closed deal, p is its prior.
    budget = _stage(computed, BUDGET)
    assert (budget.won, budget.lost, budget.p) == (0, 0, pytest.approx(3 / 6))
    assert not budget.remaining_measured and budget.remaining_days == 3 * 14  # 3 stages to go x 14 days


def test_an_open_deal_is_weighted_by_its_stage_s_p_and_expected_at_its_entry_plus_the_median_to_won(
    world: World,
) -> None:
    # Technical validation: no closed history, p = 2/6, 4 stages x 14 days to won.
    fresh = deal_create(world, price=6_000, created=at(2026, 5, 1), start=TECH)
    old = deal_create(world, price=1_200, created=at(2026, 1, 1), moves=[(DM, TECH, at(2026, 1, 10))])
    later = deal_create(world, price=900, created=at(2026, 5, 10), start=DM)
    computed = forecast_compute(
        history=history_load(account=world.account), pipeline_kommo_id=PIPELINE, at=NOW, live=False
    )
    by_pk = {deal.deal.pk: deal for deal in computed.deals}

    assert by_pk[fresh.pk].p == pytest.approx(2 / 6)
    assert by_pk[fresh.pk].expected_close == dt.date(2026, 6, 26)  # 1 May + 56 days: this quarter
    assert by_pk[old.pk].expected_close == NOW.date()  # older than the median: expected now
    # DM qualification: 5 stages x 14 = 70 days from 10 May: 19 July, the next quarter
    assert (by_pk[later.pk].expected_close, by_pk[later.pk].period) == (dt.date(2026, 7, 19), "next")
    assert computed.figures("current")["weighted"] == round((6_000 + 1_200) * 2 / 6)
    assert computed.figures("next")["weighted"] == round(900 / 6)
    # Categories by default: Signing commit, Legal review best case, the rest pipeline.
    assert computed.figures("current")["commit"] == 0
    assert computed.figures("current")["pipeline"] == 7_200


def test_the_close_date_field_sets_the_expected_close_when_the_account_maps_one(world: World) -> None:
    FieldMapping.objects.create(
        account=world.account, attribute="expected_close", source="lead_field", field_id=777
    )
    deal = deal_create(world, price=1_000, created=at(2026, 5, 1), start=TECH)
    deal.raw = {  # as Kommo returns a date field: unix seconds (2026-09-21)
        "custom_fields_values": [
            {"field_id": 777, "field_name": "Close", "field_type": "date", "values": [{"value": 1790000000}]}
        ]
    }
    deal.save()
    ForecastCategory.objects.create(status=world.stages[TECH], category=ForecastCategory.Category.COMMIT)
    computed = forecast_compute(
        history=history_load(account=world.account), pipeline_kommo_id=PIPELINE, at=NOW, live=True
    )
    (row,) = computed.deals
    assert (row.expected_close, row.from_field, row.period, row.category) == (
        dt.date(2026, 9, 21),
        True,
        "next",
        "commit",
    )
    assert computed.figures("next")["commit"] == 1_000


@override_settings(REPORTS_FORECAST_MIN_CLOSED=1)
def test_the_committee_adjustment_follows_the_win_rate_of_deals_with_a_decision_maker(world: World) -> None:
    role, _ = Role.objects.get_or_create(
        code="decision_maker", defaults={"label": "Decision maker", "is_decision_maker": True}
    )
    Role.objects.filter(pk=role.pk).update(is_decision_maker=True)

    def with_dm(lead, since):
        contact = Contact.objects.create(
            account=world.account, kommo_id=lead.kommo_id + 90000, name="DM", created_at=since
        )
        Stakeholder.objects.create(
            account=world.account, lead=lead, contact=contact, role=role, source="contact_field"
        )

    # 10 closed deals of the window in legal review: 5 with a decision maker (4 won), 5 without (1 won).
    for index in range(10):
        entered = at(2025, 6, 1 + index)
        lead = deal_create(
            world,
            price=100,
            created=entered,
            start=LEGAL,
            moves=[(LEGAL, WON if index in (0, 1, 2, 3, 5) else LOST, entered + dt.timedelta(days=5))],
        )
        if index < 5:
            with_dm(lead, at(2025, 1, 1))
    covered = deal_create(world, price=1_000, created=at(2026, 5, 1), start=LEGAL)
    with_dm(covered, at(2026, 5, 2))
    bare = deal_create(world, price=1_000, created=at(2026, 5, 1), start=LEGAL)
    computed = forecast_compute(
        history=history_load(account=world.account), pipeline_kommo_id=PIPELINE, at=NOW, live=True
    )
    by_pk = {deal.deal.pk: deal for deal in computed.deals}

    assert by_pk[covered.pk].p == pytest.approx(0.5) == by_pk[bare.pk].p
    assert by_pk[covered.pk].p_committee == pytest.approx(0.5 * 0.8 / 0.5)
    assert by_pk[bare.pk].p_committee == pytest.approx(0.5 * 0.2 / 0.5)
    assert (by_pk[covered.pk].dm, by_pk[covered.pk].approvals) == (True, True)  # no gate ahead asks anything
    # In the past the decision maker counts from their contact's creation: not yet on 1 May.
    past = forecast_compute(
        history=history_load(account=world.account),
        pipeline_kommo_id=PIPELINE,
        at=at(2026, 5, 1) + dt.timedelta(hours=1),
        live=False,
    )
    assert {deal.deal.pk: (deal.dm, deal.approvals) for deal in past.deals}[covered.pk] == (False, None)


# -- snapshots and the backtest -----------------------------------------------------------------------------


def _some_history(world: World) -> None:
    for index in range(6):
        entered = at(2025, 3 + index, 3)
        deal_create(
            world,
            price=1_000 * (index + 1),
            created=entered,
            moves=[
                (DM, TECH, entered + dt.timedelta(days=9)),
                (TECH, WON if index % 2 else LOST, entered + dt.timedelta(days=40)),
            ],
        )
    deal_create(
        world,
        price=4_000,
        created=at(2026, 2, 2),
        moves=[(DM, SIGNING, at(2026, 3, 1)), (SIGNING, WON, at(2026, 3, 20))],
    )
    deal_create(world, price=2_500, created=at(2026, 1, 5), moves=[(DM, LEGAL, at(2026, 2, 1))], manager=BOB)
    deal_create(world, price=700, created=at(2026, 4, 20))


def test_the_week_s_snapshot_is_written_once_and_cannot_be_changed(world: World, frozen) -> None:
    _some_history(world)
    assert tasks.forecast_snapshot() == 1
    assert forecast_snapshot_take(account=world.account) == 0  # the week has one: nothing more
    snapshot = ForecastSnapshot.objects.get()
    assert not snapshot.backtested and snapshot.deals.count() == 2
    with pytest.raises(TypeError):
        ForecastSnapshot.objects.update(current_weighted=1)
    with pytest.raises(TypeError):
        ForecastSnapshotDeal.objects.update(value=1)
    snapshot.current_weighted = 1
    with pytest.raises(TypeError):
        snapshot.save()
    deal = snapshot.deals.first()
    with pytest.raises(TypeError):
        deal.save()
    frozen.shift(dt.timedelta(days=7))
    assert forecast_snapshot_take(account=world.account) == 1


def test_the_backtest_writes_each_past_week_once_and_the_same_history_gives_the_same_snapshots(
    world: World, frozen
) -> None:
    _some_history(world)
    forecast_snapshot_take(account=world.account)
    out = io.StringIO()
    call_command("reports_forecast_backtest", "--weeks", "20", stdout=out)
    assert "20 snapshots in 20 weeks backtested" in out.getvalue()
    first = snapshot_rows(list(ForecastSnapshot.objects.filter(backtested=True).order_by("week")))
    assert len(first) == 20 and all(row[0][3] for row in first)
    assert forecast_backtest(account=world.account, weeks=20) == []  # nothing new

    forecast_backtest(account=world.account, weeks=20, replace=True)
    assert snapshot_rows(list(ForecastSnapshot.objects.filter(backtested=True).order_by("week"))) == first
    assert ForecastSnapshot.objects.filter(backtested=False).count() == 1  # the live one stays
    # The deal open in legal review since 1 February is in the snapshots of the weeks after.
    week = ForecastSnapshot.objects.get(week=dt.date(2026, 3, 2))
    assert week.deals.filter(stage="Legal review", value=2_500).exists()


def _snapshot(world, taken, rows):
    current = fm.quarter_start(taken.date())
    snapshot = ForecastSnapshot.objects.create(
        account=world.account,
        pipeline=world.pipeline,
        pipeline_kommo_id=PIPELINE,
        week=taken.date() - dt.timedelta(days=taken.weekday()),
        taken_at=taken,
        backtested=True,
        current_start=current,
        next_start=fm.quarter_after(current),
    )
    for lead, value, p in rows:
        ForecastSnapshotDeal.objects.create(
            snapshot=snapshot,
            lead=lead,
            lead_kommo_id=lead.kommo_id,
            status_kommo_id=TECH,
            stage="Technical validation",
            responsible_user_kommo_id=lead.responsible_user_kommo_id,
            value=value,
            p=p,
            p_committee=p,
            dm_identified=False,
            expected_close=taken.date(),
            period="current",
            category="pipeline",
        )
    return snapshot


def _accuracy_world(world: World):
    ann_deal = deal_create(world, price=1_000, created=at(2025, 9, 1))
    bob_deal = deal_create(world, price=600, created=at(2025, 9, 1), manager=BOB)
    deal_create(world, price=400, created=at(2026, 1, 10), moves=[(DM, WON, at(2026, 2, 10))])  # A of Q1 2026
    _snapshot(world, at(2025, 10, 6), [(ann_deal, 300, 1.0)])  # Q4 2025, week 1: nothing was won
    _snapshot(world, at(2026, 1, 5), [(ann_deal, 1_000, 0.5), (bob_deal, 600, 0.5)])  # Q1 2026, week 1
    _snapshot(world, at(2026, 1, 26), [(ann_deal, 1_000, 0.2)])  # Q1 2026, week 4 (25 days in)


def test_accuracy_per_quarter_and_lead_week_on_known_snapshots_with_an_empty_quarter(world: World) -> None:
    _accuracy_world(world)
    scope = Scope(start=at(2026, 4, 1), end=at(2026, 7, 1), now=NOW)
    assert closed_quarters(scope=scope) == [dt.date(2025, 7, 1), dt.date(2025, 10, 1), dt.date(2026, 1, 1)]
    history = forecast_history(scope=scope)
    q4, q1 = history  # Q3 2025 has no snapshot: left out
    assert (q4.actual, q4.forecasts[("weighted", 1)]) == (0, 300)
    assert q4.accuracy("weighted", 1).error is None
    assert (q1.actual, q1.forecasts[("weighted", 1)], q1.forecasts[("weighted", 4)]) == (400, 800, 200)
    rows = {(row.method, row.week): row for row in forecast_accuracy(history=history)}
    week1 = rows[("weighted", 1)]
    # Q1: |400 - 800| ÷ 400 = 100 %, accuracy 0, bias +100 %; Q4 (A = 0) has none; WAPE (400 + 300) ÷ 400
    assert (week1.periods, week1.zero_periods, week1.error, week1.accuracy, week1.bias) == (
        2,
        1,
        1.0,
        0.0,
        1.0,
    )
    assert week1.wape == pytest.approx(1.75)
    week4 = rows[("weighted", 4)]
    assert (week4.periods, week4.error, week4.bias, week4.wape) == (1, 0.5, -0.5, 0.5)
    assert ("weighted", 8) not in rows
    assert rows[("commit", 1)].bias == -1.0  # no commit stage among them: commit forecast 0


def test_the_forecast_page_shows_the_quarters_the_accuracy_and_the_manager_filter(
    client, world: World, frozen
) -> None:
    _accuracy_world(world)
    client.force_login(person("head", "Head of sales"))
    html = client.get("/reports/forecast/").content.decode()
    past = html_table(html, "past")
    assert past[0][:3] == ["Quarter", "Won (A)", "Stage-weighted (F)"]
    assert past[1][:2] == ["Q4 2025 (backtested)", "0"] and past[1][-1] == "nothing won: error not defined"
    assert past[2][:4] == ["Q1 2026 (backtested)", "400", "200", "200"] and past[2][6] == "50.0"
    accuracy = html_table(html, "accuracy")
    assert ["Stage-weighted", "1", "2", "1", "100.0", "0.0", "100.0", "175.0"] in accuracy
    # p' = p in these snapshots: the same WAPE, so the adjustment is not kept as helping
    assert "The committee adjustment does not help yet" in html
    # Bob's deals only: his 300 in Q1's week 1, nothing in Q4's; nothing of his was won in either (A = 0):
    # no error, no WAPE
    html = client.get(f"/reports/forecast/?manager={world.bob.pk}").content.decode()
    accuracy = html_table(html, "accuracy")
    assert ["Stage-weighted", "1", "2", "2", "", "", "", ""] in accuracy
    assert html_table(html, "past")[2][:3] == ["Q1 2026 (backtested)", "0", "0"]  # week 4: none of his
    csv = client.get("/reports/forecast/?format=csv&table=accuracy").content.decode()
    assert csv.splitlines()[0].startswith("Method,Week of the quarter,Quarters")


def test_the_page_s_current_quarter_comes_from_the_latest_snapshot(client, world: World, frozen) -> None:
    _some_history(world)
    forecast_snapshot_take(account=world.account)
    client.force_login(person("head", "Head of sales"))
    html = client.get("/reports/forecast/").content.decode()
    periods = html_table(html, "periods")
    assert [row[0] for row in periods[1:]] == ["Q2 2026", "Q3 2026"]
    movers = html_table(html, "movers")
    assert len(movers) >= 2 and movers[1][1] in ("Legal review", "DM qualification")


def test_the_backtest_reads_the_committee_as_the_stakeholder_history_says_it_was(world: World) -> None:
    from apps.gates.models import GateCondition, GateRule
    from apps.stakeholders.models import StakeholderEvent

    role, _ = Role.objects.get_or_create(code="decision_maker", defaults={"label": "Decision maker"})
    Role.objects.filter(pk=role.pk).update(is_decision_maker=True)
    rule = GateRule.objects.create(
        account=world.account, name="Buyer signs", pipeline=world.pipeline, gated_stage=world.stages[SIGNING]
    )
    GateCondition.objects.create(rule=rule, role=role, requirement="approved")
    deal = deal_create(world, price=5_000, created=at(2026, 3, 2), moves=[(DM, LEGAL, at(2026, 4, 1))])

    def event(field: str, new: object, when: dt.datetime) -> None:
        StakeholderEvent.objects.create(
            account=world.account,
            lead=deal,
            stakeholder_id=1,
            name="Dana",
            field=field,
            new=new,
            at=when,
            source="sync",
        )

    event("presence", True, at(2026, 4, 5))
    event("role", role.pk, at(2026, 4, 5))
    event("approval_status", "approved", at(2026, 5, 10))

    def state(when: dt.datetime) -> tuple[bool, bool | None]:
        history = history_load(account=world.account)
        (row,) = forecast_compute(history=history, pipeline_kommo_id=PIPELINE, at=when, live=False).deals
        return row.dm, row.approvals

    assert state(at(2026, 4, 2)) == (False, False)  # nobody on the deal yet
    assert state(at(2026, 5, 4)) == (True, False)  # the buyer is there, the signing gate's approval not yet
    assert state(at(2026, 5, 11)) == (True, True)
    # The role's approval lasts 30 days and the gate asks for one not expired: given on 10 May, it has
    # expired by 20 June.
    Role.objects.filter(pk=role.pk).update(approval_valid_days=30)
    GateCondition.objects.filter(rule=rule).update(requirement="approved_current")
    event("approval_decided_at", at(2026, 5, 10).isoformat(), at(2026, 5, 10))
    assert state(at(2026, 6, 1)) == (True, True)
    assert state(at(2026, 6, 20)) == (True, False)


def test_a_live_forecast_counts_an_expired_approval_as_missing(world: World, frozen) -> None:
    from apps.gates.models import GateCondition, GateRule

    lawyer, _ = Role.objects.get_or_create(code="lawyer", defaults={"label": "Lawyer"})
    Role.objects.filter(pk=lawyer.pk).update(approval_valid_days=30)
    rule = GateRule.objects.create(
        account=world.account, name="Lawyer signs", pipeline=world.pipeline, gated_stage=world.stages[SIGNING]
    )
    GateCondition.objects.create(rule=rule, role=lawyer, requirement="approved_current")
    deal = deal_create(world, price=5_000, created=NOW - dt.timedelta(days=90), start=LEGAL)
    contact = Contact.objects.create(account=world.account, kommo_id=deal.kommo_id + 90000, name="Lee")
    lee = Stakeholder.objects.create(
        account=world.account,
        lead=deal,
        contact=contact,
        role=lawyer,
        source="contact_field",
        approval_status="approved",
        approval_decided_at=NOW - dt.timedelta(days=10),
    )

    def approvals() -> bool | None:
        history = history_load(account=world.account)
        (row,) = forecast_compute(history=history, pipeline_kommo_id=PIPELINE, at=NOW, live=True).deals
        return row.approvals

    assert approvals() is True
    Stakeholder.objects.filter(pk=lee.pk).update(approval_decided_at=NOW - dt.timedelta(days=40))
    assert approvals() is False


@override_settings(REPORTS_FORECAST_MIN_CLOSED=1)
def test_the_cohort_s_committee_is_read_from_the_stakeholder_history_when_each_deal_left_the_stage(
    world: World,
) -> None:
    """Ten closed deals of legal review whose decision makers' contacts are all old. The history says:
    five had their decision maker on the deal and approved before they left legal review (4 won), five got
    one only after they had left (1 won). The signing gate asks for the decision maker's approval."""
    from apps.gates.models import GateCondition, GateRule
    from apps.stakeholders.models import StakeholderEvent

    role, _ = Role.objects.get_or_create(code="decision_maker", defaults={"label": "Decision maker"})
    Role.objects.filter(pk=role.pk).update(is_decision_maker=True)
    rule = GateRule.objects.create(
        account=world.account, name="Buyer signs", pipeline=world.pipeline, gated_stage=world.stages[SIGNING]
    )
    GateCondition.objects.create(rule=rule, role=role, requirement="approved")

    def decision_maker(lead, *, joined: dt.datetime, approved: dt.datetime | None) -> None:
        contact = Contact.objects.create(
            account=world.account, kommo_id=lead.kommo_id + 90000, name="DM", created_at=at(2024, 1, 1)
        )
        row = Stakeholder.objects.create(
            account=world.account,
            lead=lead,
            contact=contact,
            role=role,
            source="contact_field",
            approval_status="approved" if approved else "unknown",
        )
        changes = [("presence", "DM", at(2024, 1, 1)), ("role", role.pk, joined)]
        if approved is not None:
            changes.append(("approval_status", "approved", approved))
        for field, new, when in changes:
            StakeholderEvent.objects.create(
                account=world.account,
                lead=lead,
                stakeholder_id=row.pk,
                name="DM",
                field=field,
                new=new,
                at=when,
                source="sync",
            )

    for index in range(10):
        entered = at(2025, 6, 1 + index)
        left = entered + dt.timedelta(days=5)
        outcome = WON if index in (0, 1, 2, 3, 5) else LOST
        lead = deal_create(world, price=100, created=entered, start=LEGAL, moves=[(LEGAL, outcome, left)])
        if index < 5:
            decision_maker(lead, joined=entered, approved=entered + dt.timedelta(days=1))
        else:
            decision_maker(lead, joined=left + dt.timedelta(days=3), approved=None)
    ready = deal_create(world, price=1_000, created=at(2026, 4, 1), start=LEGAL)
    decision_maker(ready, joined=at(2026, 4, 2), approved=at(2026, 4, 3))
    waiting = deal_create(world, price=1_000, created=at(2026, 4, 1), start=LEGAL)
    decision_maker(waiting, joined=at(2026, 4, 2), approved=None)

    for live in (False, True):
        computed = forecast_compute(
            history=history_load(account=world.account), pipeline_kommo_id=PIPELINE, at=NOW, live=live
        )
        legal = _stage(computed, LEGAL)
        assert legal.states == {(True, True): [4, 5], (False, False): [1, 5]}
        by_pk = {deal.deal.pk: deal for deal in computed.deals}
        assert by_pk[ready.pk].p == pytest.approx(0.5) == by_pk[waiting.pk].p
        assert (by_pk[ready.pk].dm, by_pk[ready.pk].approvals) == (True, True)
        assert by_pk[ready.pk].p_committee == pytest.approx(0.5 * 0.8 / 0.5)
        # Waiting has its decision maker but not the approval: no closed deal of the cohort was in that
        # state, so its factor is 1.
        assert (by_pk[waiting.pk].dm, by_pk[waiting.pk].approvals) == (True, False)
        assert by_pk[waiting.pk].p_committee == pytest.approx(0.5)
        assert computed.figures("current")["committee"] != computed.figures("current")["weighted"]
