"""Stuck deals and why: each reason on a constructed history with a known answer."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from apps.kommo.models import Lead
from apps.reports.models import StageNorm
from apps.reports.selectors.stuck import Reason, stage_usual_times, stuck_deals, stuck_reason_codes
from apps.stakeholders.models import Stakeholder
from tests.reports.desk import NOW, Desk, days_ago, desk, make_desk

__all__ = ["desk"]
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _limits(settings) -> None:
    settings.REPORTS_STALE_TOUCH_DAYS = 14
    settings.REPORTS_OBJECTION_WEIGHT = 0.5
    settings.REPORTS_STAGE_DEFAULT_DAYS = 14


def calm(desk: Desk, lead: Lead) -> None:
    """A decision maker touched yesterday: nothing but what a test adds makes the deal stuck."""
    desk.stakeholder(lead, "decision_maker", name="Dora", approval="approved", touched_days_ago=1)


def reasons_of(desk: Desk, lead: Lead) -> dict[str, str]:
    found = {deal.lead.pk: deal for deal in stuck_deals(account=desk.account, now=NOW)}
    deal = found.get(lead.pk)
    return {reason.code.value: reason.text for reason in deal.reasons} if deal else {}


# -- the stage's usual time -------------------------------------------------------------------------------


def test_with_fewer_than_20_completed_stays_the_stages_default_is_its_usual_time(desk: Desk) -> None:
    desk.completed_stays("Technical validation", [2.0] * 19)
    StageNorm.objects.create(status=desk.stages["Technical validation"], usual_days=Decimal("12"))

    usual = stage_usual_times(account=desk.account, now=NOW)[desk.stages["Technical validation"].pk]

    assert (usual.days, usual.stays, usual.measured) == (12.0, 19, False)
    # No default of its own: the setting's.
    other = stage_usual_times(account=desk.account, now=NOW)[desk.stages["Budget approval"].pk]
    assert (other.days, other.measured) == (14.0, False)


def test_with_20_completed_stays_in_the_last_180_days_the_median_is_the_usual_time(desk: Desk) -> None:
    desk.completed_stays("Technical validation", [2.0] * 10 + [4.0] * 10)
    desk.completed_stays("Technical validation", [100.0] * 30, left_days_ago=181)  # too old to count
    StageNorm.objects.create(status=desk.stages["Technical validation"], usual_days=Decimal("12"))

    usual = stage_usual_times(account=desk.account, now=NOW)[desk.stages["Technical validation"].pk]

    assert (usual.days, usual.stays, usual.measured) == (pytest.approx(3.0), 20, True)


def test_a_deal_exactly_at_one_and_a_half_times_the_usual_time_is_not_overdue_and_just_past_it_is(
    desk: Desk,
) -> None:
    StageNorm.objects.create(status=desk.stages["Technical validation"], usual_days=Decimal("10"))
    at_limit = desk.deal("at the limit", entered_days_ago=15)
    past = desk.deal("past the limit", entered_days_ago=15.01)
    calm(desk, at_limit)
    calm(desk, past)

    assert reasons_of(desk, at_limit) == {}
    assert reasons_of(desk, past) == {"stage_overdue": "Technical validation for 15 days (usual 10 days)"}


def test_time_in_stage_adds_up_every_stay_of_a_deal_that_re_entered_the_stage(desk: Desk) -> None:
    """A gate's move back (or any return) does not restart the clock: 6 + 5 days in legal review is 11."""
    StageNorm.objects.create(status=desk.stages["Legal review"], usual_days=Decimal("7"))
    lead = desk.deal(stage="Legal review", entered_days_ago=5)
    desk.stay(lead, "Legal review", entered=days_ago(12), left=days_ago(6))
    desk.stay(lead, "Signing", entered=days_ago(6), left=days_ago(5))
    calm(desk, lead)

    [deal] = stuck_deals(account=desk.account, now=NOW)

    assert deal.days_in_stage == pytest.approx(11.0)
    assert deal.text == "Legal review for 11 days (usual 7 days)"


# -- the other reasons ------------------------------------------------------------------------------------


def test_no_stakeholder_touched_for_14_days_makes_a_deal_stuck(desk: Desk) -> None:
    fresh = desk.deal("fresh")
    desk.stakeholder(fresh, "decision_maker", approval="approved", touched_days_ago=13.9)
    stale = desk.deal("stale")
    desk.stakeholder(stale, "decision_maker", approval="approved", touched_days_ago=20)
    desk.stakeholder(stale, "user", touched_days_ago=None)
    nobody = desk.deal("nobody")

    assert reasons_of(desk, fresh) == {}
    assert reasons_of(desk, stale) == {"stale_touch": "no stakeholder touched for 20 days"}
    assert reasons_of(desk, nobody)["stale_touch"] == "no stakeholder identified"


def test_a_deal_without_an_open_task_is_stuck(desk: Desk) -> None:
    lead = desk.deal(open_task=False)
    calm(desk, lead)

    assert reasons_of(desk, lead) == {"no_open_task": "no open task"}


def test_what_the_gate_at_its_stage_requires_and_is_missing_makes_a_deal_stuck(desk: Desk) -> None:
    desk.rule("Budget approval", (("decision_maker", "approved"),))
    desk.rule("Legal review", (("lawyer", "present"), ("lawyer", "approved")))
    # In technical validation: no gate to pass to move on; legal review's wanting a lawyer is for later.
    early = desk.deal("early", stage="Technical validation")
    calm(desk, early)
    # In legal review: the legal gate is the one to pass.
    legal = desk.deal("legal", stage="Legal review")
    calm(desk, legal)
    desk.stakeholder(legal, "lawyer", name="Lee", approval="rejected")

    assert reasons_of(desk, early) == {}
    assert reasons_of(desk, legal) == {"gate_missing": "the lawyer has not approved (Lee: rejected)"}


def test_an_objection_at_or_above_the_weight_makes_a_deal_stuck(desk: Desk) -> None:
    lead = desk.deal()
    calm(desk, lead)
    desk.stakeholder(lead, "technical_evangelist", name="Tom", objection="0.7")
    desk.stakeholder(lead, "user", name="Uma", objection="0.3")
    other = desk.deal("at the weight")
    calm(desk, other)
    desk.stakeholder(other, "user", name="Ulf", objection="0.5")

    assert reasons_of(desk, lead) == {
        "objection_open": "technical evangelist Tom: objection open, weight 0.7"
    }
    assert reasons_of(desk, other) == {"objection_open": "user Ulf: objection open, weight 0.5"}


def test_the_reason_names_the_open_objection_and_its_age_and_a_resolved_one_is_no_reason(desk: Desk) -> None:
    lead = desk.deal()
    calm(desk, lead)
    tom = desk.stakeholder(lead, "technical_evangelist", name="Tom", objection="0.7")
    Stakeholder.objects.filter(pk=tom.pk).update(
        objection="No SSO support", objection_raised_at=NOW - dt.timedelta(days=12, hours=3)
    )
    resolved = desk.deal("resolved")
    calm(desk, resolved)
    uma = desk.stakeholder(resolved, "user", name="Uma", objection="0.9")
    Stakeholder.objects.filter(pk=uma.pk).update(objection_resolved_at=NOW - dt.timedelta(days=1))

    assert reasons_of(desk, lead) == {
        "objection_open": "technical evangelist Tom: objection “No SSO support” open for 12 days, weight 0.7"
    }
    assert reasons_of(desk, resolved) == {}


def test_the_boards_question_is_answered_in_one_line(desk: Desk) -> None:
    """The board asks: why has an $80k deal been stuck in the second stage for six weeks?"""
    desk.completed_stays("Technical validation", [12.0] * 20)
    desk.rule("Technical validation", (("decision_maker", "present"),))
    lead = desk.deal("Northwind", price=80_000, entered_days_ago=42)
    desk.stakeholder(lead, "technical_evangelist", name="Tom", objection="0.7", touched_days_ago=2)

    [deal] = stuck_deals(account=desk.account, now=NOW)

    assert deal.text == (
        "Technical validation for 42 days (usual 12 days) · "
        "no decision maker (economic buyer) is identified on the deal · "
        "technical evangelist Tom: objection open, weight 0.7"
    )
    assert deal.codes == ("stage_overdue", "gate_missing", "objection_open")


def test_stuck_deals_are_the_open_ones_of_the_account_and_query_highest_value_first(desk: Desk) -> None:
    small = desk.deal("small", price=1_000, open_task=False)
    big = desk.deal("big", price=90_000, open_task=False)
    fine = desk.deal("fine")
    calm(desk, fine)
    for lead in (small, big):
        calm(desk, lead)
    won = desk.deal("won", stage="Closed - won", open_task=False)
    other = make_desk("Other", kommo_id=2)
    other.deal("elsewhere", open_task=False)

    assert [deal.lead.name for deal in stuck_deals(account=desk.account, now=NOW)] == ["big", "small"]
    only_small = Lead.objects.filter(pk__in=[small.pk, won.pk])
    assert stuck_reason_codes(account=desk.account, leads_qs=only_small, now=NOW) == {
        small.pk: (Reason.NO_OPEN_TASK.value,)
    }


def test_the_number_of_queries_does_not_grow_with_the_number_of_deals(
    desk: Desk, django_assert_max_num_queries
) -> None:
    desk.rule("Legal review")

    def build(count: int) -> None:
        for index in range(count):
            lead = desk.deal(f"deal {index}", stage="Legal review", open_task=False)
            desk.stakeholder(lead, "lawyer", objection="0.9")

    build(2)
    with django_assert_max_num_queries(9) as few:
        stuck_deals(account=desk.account, now=NOW)
    build(20)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(stuck_deals(account=desk.account, now=NOW)) == 22


def test_now_defaults_to_the_current_time(desk: Desk, time_machine) -> None:
    time_machine.move_to(NOW + dt.timedelta(days=30))
    lead = desk.deal()
    calm(desk, lead)

    assert reasons_of(desk, lead) == {}
    assert [deal.lead.pk for deal in stuck_deals(account=desk.account)] == [lead.pk]  # 30 days untouched
