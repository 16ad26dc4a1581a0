"""The decision-maker coverage, stuck-deals and gates pages: what they show, filters, who sees what, CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
import time_machine

from apps.gates.models import GateDecision
from apps.reports.coverage_snapshots import coverage_snapshot_take
from apps.reports.export import stuck as export_stuck
from apps.reports.export.stuck import stuck_states_refresh
from apps.reports.models import StuckRefresh, StuckState
from apps.reports.selectors.stuck import stuck_deals
from apps.reports.tasks import export_stuck_refresh, stuck_refresh_account
from tests.reports.desk import NOW, Desk, days_ago, desk
from tests.reports.support import html_table, person

__all__ = ["desk"]
pytestmark = pytest.mark.django_db
Outcome = GateDecision.Outcome


@pytest.fixture
def frozen_now():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def head(db):
    return person("head", "Head of sales")


@pytest.fixture
def history(desk: Desk) -> Desk:
    """Chris: an 80k deal stuck in technical validation for 42 days with an objection and no decision maker,
    blocked twice at legal review; a calm 5k deal. Maria: a 20k deal without an open task."""
    desk.completed_stays("Technical validation", [12.0] * 20)
    big = desk.deal("Northwind", price=80_000, entered_days_ago=42)
    desk.stakeholder(big, "technical_evangelist", name="Tom", objection="0.7", touched_days_ago=2)
    calm = desk.deal("Calm", price=5_000)
    desk.stakeholder(calm, "decision_maker", approval="approved")
    quiet = desk.deal("Quiet", price=20_000, manager="maria", open_task=False)
    desk.stakeholder(quiet, "decision_maker", approval="pending")
    rule = desk.rule("Legal review", name="Lawyer approved")
    desk.decision(rule, big, Outcome.BLOCKED, days_ago(20), ["the Lawyer has not approved (Lee: pending)"])
    desk.decision(rule, big, Outcome.ALLOWED, days_ago(16))
    desk.decision(rule, quiet, Outcome.BLOCKED, days_ago(200), ["no Lawyer is identified on the deal"])
    return desk


def get(client, user, path):
    client.force_login(user)
    response = client.get(path)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


@pytest.fixture
def refreshed(history: Desk) -> Desk:
    """The stuck states written at NOW, as the beat task would."""
    stuck_states_refresh(account=history.account, now=NOW)
    return history


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The accounts whose stuck-states refresh a request queued (the task is recorded, not run)."""
    sent: list[int] = []
    monkeypatch.setattr(stuck_refresh_account, "delay", sent.append)
    return sent


@pytest.fixture
def never_evaluated(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stuck-deals selector may not run: what the refresh runs over every open deal."""

    def refuse(**kwargs: object) -> None:
        raise AssertionError("the stuck-deals selector ran inside the request")

    monkeypatch.setattr(export_stuck, "stuck_deals", refuse)


def test_the_stuck_page_answers_the_board_deal_by_deal(client, refreshed, head, frozen_now) -> None:
    html = get(client, head, "/reports/stuck/")

    rows = html_table(html, "deals")
    assert rows[0] == [
        "Deal",
        "Stage",
        "Manager",
        "Value",
        "Days in stage",
        "Usual days",
        "Why",
        "Codes",
        "Kommo",
    ]
    assert rows[1] == [
        "Northwind",
        "Technical validation",
        "Chris Novak",
        "80000",
        "42.0",
        "12.0",
        "Technical validation for 42 days (usual 12 days) · "
        "technical evangelist Tom: objection open, weight 0.7",
        "stage_overdue objection_open",
        "Kommo",
    ]
    assert [row[0] for row in rows[1:]] == ["Northwind", "Quiet"]
    northwind = refreshed.account.stakeholders.get(name="Tom").lead
    assert f'href="/deals/{northwind.pk}/"' in html
    assert f'href="https://acme.kommo.com/leads/detail/{northwind.kommo_id}"' in html
    assert ["no open task", "no_open_task", "1", "20000"] == html_table(html, "reasons")[3][:4]


def test_the_stuck_page_of_a_manager_shows_only_their_deals(client, refreshed, frozen_now) -> None:
    maria = person("maria", "Manager", kommo_user_id=502)

    rows = html_table(get(client, maria, "/reports/stuck/"), "deals")

    assert [row[0] for row in rows[1:]] == ["Quiet"]


def test_the_stuck_csv_is_the_table_with_kommos_address(client, refreshed, head, frozen_now) -> None:
    html = get(client, head, "/reports/stuck/")

    for key in ("reasons", "deals"):
        response = client.get(f"/reports/stuck/?format=csv&table={key}")
        rows = list(csv.reader(io.StringIO(response.content.decode())))
        shown = html_table(html, key)
        if key == "deals":  # the page links "Kommo"; the CSV has the address
            assert rows[1][-1].startswith("https://acme.kommo.com/leads/detail/")
            rows, shown = [row[:-1] for row in rows], [row[:-1] for row in shown]
        assert rows == shown


def test_the_stuck_page_reads_the_states_of_the_last_refresh_and_says_when_that_was(
    client, history, head, frozen_now
) -> None:
    stuck_states_refresh(account=history.account, now=NOW)
    frozen_now.move_to(NOW + dt.timedelta(minutes=15))  # within two refresh intervals: no refresh
    late = history.deal("Latecomer", price=90_000, open_task=False)  # stuck since the last refresh

    html = get(client, head, "/reports/stuck/")

    assert [row[0] for row in html_table(html, "deals")[1:]] == ["Northwind", "Quiet"]
    assert "As of 01 May 2025 12:00: the stuck states are refreshed every 10 minutes." in html
    assert late.pk not in set(StuckState.objects.values_list("lead_id", flat=True))

    export_stuck_refresh()  # the beat task

    html = get(client, head, "/reports/stuck/")
    assert [row[0] for row in html_table(html, "deals")[1:]] == ["Latecomer", "Northwind", "Quiet"]
    assert "As of 01 May 2025 12:15" in html
    assert html_table(html, "reasons")[3][:4] == ["no open task", "no_open_task", "2", "110000"]


def test_stale_stuck_states_are_shown_as_stale_and_one_refresh_is_queued_for_every_viewer(
    client, refreshed, head, frozen_now, queued, never_evaluated, django_assert_max_num_queries
) -> None:
    history = refreshed
    frozen_now.move_to(NOW + dt.timedelta(minutes=21))  # beat has not run for over two intervals
    history.deal("Latecomer", price=90_000, open_task=False)

    client.force_login(head)
    with django_assert_max_num_queries(20):  # the page's reads, a claim and no evaluation
        html = client.get("/reports/stuck/").content.decode()
    again = get(client, head, "/reports/stuck/")  # a second viewer while the refresh is queued

    assert [row[0] for row in html_table(html, "deals")[1:]] == ["Northwind", "Quiet"]
    assert (
        '<p role="status" style="margin: 0 0 1rem; padding: 0.5rem 0.75rem; border: 1px solid #f59e0b; '
        'border-radius: 0.375rem; background: #fef3c7; color: #78350f">'
        "As of 01 May 2025 12:00: these figures are stale (refreshed every 10 minutes, the last refresh is "
        "over 20 minutes old); a refresh is queued; reload the page in a minute.</p>" in html
    )
    assert "a refresh is queued" in again
    assert queued == [history.account.pk]  # one refresh for both viewers
    mark = StuckRefresh.objects.get(account=history.account)
    assert (mark.refreshed_at, mark.queued_at) == (NOW, NOW + dt.timedelta(minutes=21))

    # A queued refresh lost with its worker is queued again once it has waited an interval.
    frozen_now.move_to(NOW + dt.timedelta(minutes=32))
    get(client, head, "/reports/stuck/")
    assert queued == [history.account.pk] * 2


def test_the_queued_refresh_brings_the_page_up_to_date(client, history, head, frozen_now, queued) -> None:
    stuck_states_refresh(account=history.account, now=NOW)
    frozen_now.move_to(NOW + dt.timedelta(minutes=21))
    history.deal("Latecomer", price=90_000, open_task=False)
    get(client, head, "/reports/stuck/")

    stuck_refresh_account(*queued)  # what the worker runs

    html = get(client, head, "/reports/stuck/")
    assert [row[0] for row in html_table(html, "deals")[1:]] == ["Latecomer", "Northwind", "Quiet"]
    assert "As of 01 May 2025 12:21: the stuck states are refreshed every 10 minutes." in html
    mark = StuckRefresh.objects.get(account=history.account)
    assert (mark.refreshed_at, mark.queued_at) == (NOW + dt.timedelta(minutes=21), None)
    assert queued == [history.account.pk]


def test_an_account_never_refreshed_is_being_computed_with_a_refresh_queued_not_computed_inline(
    client, history, head, frozen_now, queued, never_evaluated
) -> None:
    html = get(client, head, "/reports/stuck/")

    assert '<p role="status"' in html
    assert "Being computed: the stuck states have never been computed; a refresh is queued" in html
    assert html_table(html, "deals") == html_table(html, "reasons") == []  # no figures yet, not zeros
    assert "No open deal is stuck" not in html
    assert queued == [history.account.pk]
    assert not StuckState.objects.exists()
    assert StuckRefresh.objects.get(account=history.account).refreshed_at is None


def test_the_stuck_states_are_the_selectors_answer_and_their_words_move_without_changed(
    history, frozen_now
) -> None:
    stuck_states_refresh(account=history.account, now=NOW)
    live = {deal.lead.pk: deal for deal in stuck_deals(account=history.account, now=NOW)}
    states = {state.lead_id: state for state in StuckState.objects.all()}

    assert set(states) == set(live)
    for lead_id, deal in live.items():
        state = states[lead_id]
        assert (state.reasons, state.text) == (";".join(deal.codes), deal.text)
        assert state.days_in_stage == pytest.approx(deal.days_in_stage)
        assert state.usual_days == pytest.approx(deal.usual.days if deal.usual else None)

    later = NOW + dt.timedelta(days=3)
    assert stuck_states_refresh(account=history.account, now=later) == 0  # the same codes: none changed
    northwind = StuckState.objects.get(lead__name="Northwind")
    assert northwind.changed == NOW
    assert northwind.days_in_stage == pytest.approx(45.0)
    assert northwind.text.startswith("Technical validation for 45 days")


def test_the_coverage_page_now_and_week_by_week_and_its_manager_filter(
    client, history, head, frozen_now
) -> None:
    coverage_snapshot_take(account=history.account, now=NOW)

    html = get(client, head, "/reports/coverage/")

    assert html_table(html, "stages")[1:] == [
        ["Technical validation", "3", "105000", "1", "33.3", "76.2", "1", "33.3", "4.8"],
        ["All open deals", "3", "105000", "1", "33.3", "76.2", "1", "33.3", "4.8"],
    ]
    assert [row[:4] for row in html_table(html, "managers")[1:]] == [
        ["Chris Novak", "2", "85000", "1"],
        ["Maria Lopez", "1", "20000", "0"],
    ]
    assert html_table(html, "trend")[1][:4] == ["2025-04-28", "3", "105000", "1"]
    maria = history.managers["maria"]
    filtered = get(client, head, f"/reports/coverage/?manager={maria.pk}")
    assert html_table(filtered, "stages")[1][:4] == ["Technical validation", "1", "20000", "0"]
    assert html_table(filtered, "trend")[1][:4] == ["2025-04-28", "1", "20000", "0"]


def test_the_gates_page_and_its_period(client, history, head, frozen_now) -> None:
    html = get(client, head, "/reports/gates/")

    assert html_table(html, "rules")[1] == [
        "Lawyer approved",
        "Legal review",
        "1",
        "0",
        "1",
        "1",
        "0",
        "4.0",
        "4.0",
    ]
    assert html_table(html, "missing")[1:] == [["the Lawyer has not approved", "1", "1"]]
    assert html_table(html, "managers")[1:] == [["Chris Novak", "1", "0", "1"]]

    year = get(client, head, "/reports/gates/?period=last_12_months")
    assert [row[:3] for row in html_table(year, "rules")[1:]] == [["Lawyer approved", "Legal review", "2"]]
    assert len(html_table(year, "missing")) == 3


def test_each_page_has_a_chart_with_an_accessible_label(client, refreshed, head, frozen_now) -> None:
    for path, label in (
        ("/reports/coverage/", "Share of open deals without a decision maker"),
        ("/reports/stuck/", "Stuck deals by reason"),
        ("/reports/gates/", "Blocks per rule"),
    ):
        html = get(client, head, path)
        assert f'role="img" aria-label="{label}' in html, path
