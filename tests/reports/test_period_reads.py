"""The report selectors read the period's rows and the open deals, not the history (docs/reports.md,
"Performance"): the deleted deals are left out by their list where a query reads nothing else of the deals,
the deals' columns of a period's rows are read from the first of those deals on, the funnel's "won now" from
the deals won since the period began — with the same figures as before."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.kommo.models import Lead
from apps.reports.framework import scope_for
from apps.reports.selectors.funnel import funnel
from apps.reports.selectors.outcomes import losses_by_stage, outcomes
from apps.reports.selectors.pipeline import pipeline_by_manager, pipeline_by_stage
from apps.reports.selectors.time_in_stage import time_in_stage
from tests.reports.support import BOB, DM, LOST, NOW, TECH, WON, day, deal_create, person

pytestmark = pytest.mark.django_db

# A stay's table joined to the deals table by the deal's key, as Django writes it.
JOINED = '"kommo_stagestay"."lead_id" = "kommo_lead"."id"'


@pytest.fixture
def deals(world):
    # Lost from Tech in April (reason 7).
    deal_create(
        world,
        price=100,
        created=day(4, 1),
        moves=[(DM, TECH, day(4, 11)), (TECH, LOST, day(4, 20))],
        loss_reason=7,
    )
    # Won from DM in April.
    deal_create(world, price=200, created=day(4, 2), moves=[(DM, WON, day(4, 12))], manager=BOB)
    # Created in January, moved to Tech in March, still there: open at the end of last quarter and now.
    deal_create(world, price=600, created=day(1, 10), moves=[(DM, TECH, day(3, 5))], manager=BOB)
    # Through Tech and won in April like the others, then deleted: in no figure.
    gone = deal_create(
        world, price=400, created=day(4, 3), moves=[(DM, TECH, day(4, 13)), (TECH, WON, day(4, 22))]
    )
    Lead.objects.filter(pk=gone.pk).update(is_deleted=True)
    # The loss reason's name is carried by one deal of the reason only.
    Lead.objects.filter(loss_reason_kommo_id=7).update(
        raw={"_embedded": {"loss_reason": [{"id": 7, "name": "Price"}]}}
    )
    deal_create(world, price=50, created=day(1, 5), moves=[(DM, LOST, day(1, 6))], loss_reason=7)
    return world


def _scope(query=None):
    return scope_for(person("head", "Head of sales"), query or {}, now=NOW)[0]


def test_the_deleted_deal_is_in_no_figure_of_the_period(deals) -> None:
    scope = _scope()

    stages = {row.stage: row for row in funnel(scope=scope)}
    assert (stages["DM qualification"].entered, stages["DM qualification"].went_on) == (2, 2)
    assert (stages["DM qualification"].won, stages["Won"].entered) == (1, 1)
    assert (stages["Technical validation"].entered, stages["Technical validation"].won) == (1, 0)
    tech = next(row for row in time_in_stage(scope=scope) if row.stage == "Technical validation")
    assert (tech.completed, tech.median, tech.open) == (1, 9.0, 1)
    total = outcomes(scope=scope)[0]
    assert (total.won, total.lost, total.won_value) == (1, 1, 200)
    reasons, rows = losses_by_stage(scope=scope)
    assert reasons == ["reason:7|Price"]
    assert rows == [{"stage": "Technical validation", "total": 1, "reason:7": 1}]


def test_the_deals_open_at_the_end_of_a_past_period_with_their_value_and_manager(deals) -> None:
    # At the end of last quarter (1 April) only the deal created in January was open, in Tech.
    scope = _scope({"period": "last_quarter"})

    assert [(row.stage, row.deals, row.value) for row in pipeline_by_stage(scope=scope)] == [
        ("Technical validation", 1, 600)
    ]
    assert [(row.manager, row.deals, row.value) for row in pipeline_by_manager(scope=scope)] == [
        ("Bob Stone", 1, 600)
    ]


def test_the_periods_stays_are_not_joined_to_every_deal_for_their_deleted_flag(deals) -> None:
    scope = _scope()

    with CaptureQueriesContext(connection) as queries:
        funnel(scope=scope)
        time_in_stage(scope=scope)
    stays = [query["sql"] for query in queries.captured_queries if '"kommo_stagestay"' in query["sql"]]

    completed = [sql for sql in stays if '"left_at" >=' in sql]
    entered = [sql for sql in stays if '"entered_at" >=' in sql and "COUNT(DISTINCT" in sql]
    assert completed and entered
    assert not [sql for sql in completed + entered if JOINED in sql]
