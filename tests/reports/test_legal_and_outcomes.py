import pytest
import time_machine

from apps.gates.models import GateCondition, GateDecision, GateRule
from apps.kommo.models import Contact, Lead
from apps.stakeholders.models import Role, Stakeholder
from apps.users.models import User
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


def table(client, slug, key, query=""):
    client.force_login(User.objects.filter(username="head").first() or person("head", "Head of sales"))
    response = client.get(f"/reports/{slug}/{query}")
    assert response.status_code == 200
    return html_table(response.content.decode(), key)


@pytest.fixture
def legal(world):
    rule = GateRule.objects.create(
        account=world.account, name="Lawyer", pipeline=world.pipeline, gated_stage=world.stages[LEGAL]
    )
    GateCondition.objects.create(rule=rule, role=Role.objects.get(code="lawyer"), requirement="approved")
    # 1: 6 days in legal review, then forward to signing.
    deal_create(
        world, price=100, created=day(4, 1), moves=[(DM, LEGAL, day(4, 2)), (LEGAL, SIGNING, day(4, 8))]
    )
    # 2: 10 days, blocked once on the way out (moved back by the gate), then passed straight to won.
    blocked = deal_create(
        world,
        price=200,
        created=day(4, 1),
        moves=[
            (DM, LEGAL, day(4, 5)),
            (LEGAL, SIGNING, day(4, 10)),
            (SIGNING, LEGAL, day(4, 10, 13)),
            (LEGAL, WON, day(4, 20, 13)),
        ],
    )
    with time_machine.travel(day(4, 10, 12), tick=False):
        GateDecision.objects.create(
            account=world.account,
            rule=rule,
            rule_version=1,
            mode="enforce",
            lead=blocked,
            from_status_kommo_id=LEGAL,
            to_status_kommo_id=SIGNING,
            transition="Legal review → Signing",
            outcome=GateDecision.Outcome.BLOCKED,
        )
    # 3: lost from legal review after 3 days.
    deal_create(world, price=300, created=day(4, 1), moves=[(DM, LEGAL, day(4, 3)), (LEGAL, LOST, day(4, 6))])
    # 4: in legal review since 20 April (25 days at 15 May noon), its lawyer pending.
    stale = deal_create(
        world, price=400, created=day(4, 1), moves=[(DM, LEGAL, day(4, 20))], manager=BOB, name="Acme renewal"
    )
    Stakeholder.objects.create(
        account=world.account,
        lead=stale,
        contact=Contact.objects.create(account=world.account, kommo_id=9001, name="Lee"),
        role=Role.objects.get(code="lawyer"),
        approval_status="pending",
        name="Lee",
        source="contact_field",
    )
    # 5: in legal review since 10 May: not old yet.
    deal_create(world, price=500, created=day(4, 1), moves=[(DM, LEGAL, day(5, 10))])
    return world


def test_legal_review_time_to_pass_open_reviews_and_gate_blocks(client, legal, frozen):
    assert table(client, "legal-review", "reviews") == [
        [
            "Legal stage",
            "Passed",
            "Median (days)",
            "75th percentile (days)",
            "Left otherwise",
            "Open",
            "Open > 14 days",
            "Gate blocks",
            "Deals blocked",
        ],
        # Passed: deal 1 (6 days) and deal 2 twice: forward at 5 days (then moved back) and won after 10.
        ["Legal review", "3", "6.0", "8.0", "1", "2", "1", "1", "1"],
    ]
    stale = table(client, "legal-review", "stale")
    assert stale == [
        ["Deal", "Manager", "Value", "Days in review", "Lawyer", "Gate blocks"],
        ["Acme renewal", "Bob Stone", "400", "25.0", "pending", "0"],
    ]
    html = client.get("/reports/legal-review/").content.decode()
    deal = Lead.objects.get(name="Acme renewal")
    assert f'href="/deals/{deal.pk}/"' in html


def test_legal_review_by_manager(client, legal, frozen):
    rows = table(client, "legal-review", "reviews", f"?manager={legal.bob.pk}")

    assert rows[1] == ["Legal review", "0", "", "", "0", "1", "1", "0", "0"]


@pytest.fixture
def closed(world):
    deal_create(
        world, price=1000, created=day(3, 1), moves=[(DM, SIGNING, day(4, 1)), (SIGNING, WON, day(4, 11))]
    )
    deal_create(world, price=3000, created=day(4, 1), moves=[(DM, WON, day(4, 21))], manager=BOB)
    deal_create(
        world,
        price=50,
        created=day(4, 1),
        moves=[(DM, TECH, day(4, 2)), (TECH, LOST, day(4, 3))],
        loss_reason=7,
    )
    deal_create(
        world,
        price=60,
        created=day(4, 1),
        moves=[(DM, TECH, day(4, 2)), (TECH, LOST, day(4, 4))],
        loss_reason=7,
    )
    deal_create(
        world, price=70, created=day(4, 1), moves=[(DM, BUDGET, day(4, 2)), (BUDGET, LOST, day(4, 5))]
    )
    deal_create(world, price=80, created=day(4, 1), moves=[(DM, LOST, day(4, 2))], loss_reason=8, manager=BOB)
    # Won last quarter: not counted this quarter.
    deal_create(world, price=9, created=day(1, 1), moves=[(DM, WON, day(3, 1))])
    Lead.objects.filter(loss_reason_kommo_id=7).update(
        raw={"_embedded": {"loss_reason": [{"id": 7, "name": "Price"}]}}
    )
    return world


def test_win_rate_cycle_of_won_deals_and_loss_reasons_by_stage(client, closed, frozen):
    assert table(client, "outcomes", "outcomes") == [
        [
            "Manager",
            "Won",
            "Lost",
            "Win rate (%)",
            "Value won",
            "Cycle, median (days)",
            "Cycle, 75th percentile (days)",
        ],
        # Cycles: 41 days (1 March → 11 April) and 20 days (1 → 21 April).
        ["All managers", "2", "4", "33.3", "4000", "30.5", "35.8"],
        ["Ann Lee", "1", "3", "25.0", "1000", "41.0", "41.0"],
        ["Bob Stone", "1", "1", "50.0", "3000", "20.0", "20.0"],
    ]
    assert table(client, "outcomes", "losses") == [
        # Reasons by frequency; "no reason given" after the named ones of equal count.
        ["Lost at stage", "Lost", "Price", "reason 8", "no reason given"],
        ["DM qualification", "1", "", "1", ""],
        ["Technical validation", "2", "2", "", ""],
        ["Budget approval", "1", "", "", "1"],
    ]


def test_outcomes_follow_the_period(client, closed, frozen):
    assert table(client, "outcomes", "outcomes", "?period=last_quarter")[1:] == [
        ["All managers", "1", "0", "100.0", "9", "59.0", "59.0"],
        ["Ann Lee", "1", "0", "100.0", "9", "59.0", "59.0"],
    ]
