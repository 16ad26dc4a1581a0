"""The reports add "Stuck" to the managers' deal list: the filter keeps the deals the stuck-deals report
calls stuck, and their rows say why."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from apps.kommo.models import Contact, Lead
from apps.reports.export import stuck as export_stuck
from apps.reports.export.stuck import stuck_states_refresh
from apps.reports.models import StuckRefresh, StuckState
from apps.reports.selectors.stuck import stuck_deals
from apps.reports.tasks import stuck_refresh_account
from apps.stakeholders.models import Role, Stakeholder
from apps.users.models import User
from tests.factories import KommoAccountFactory, PipelineFactory, StatusFactory
from tests.reports.desk import NOW, Desk, desk
from tests.reports.support import person

__all__ = ["desk"]

pytestmark = pytest.mark.django_db


def test_the_deal_list_filters_the_stuck_deals_and_says_why(client):
    account = KommoAccountFactory(name="Acme", base_url="https://acme.kommo.com")
    pipeline = PipelineFactory(account=account, kommo_id=1, name="B2B")
    stage = StatusFactory(account=account, pipeline=pipeline, kommo_id=11, name="Legal review", sort=50)

    def deal(name: str, **fields) -> Lead:
        return Lead.objects.create(
            account=account,
            kommo_id=Lead.objects.count() + 100,
            name=name,
            pipeline=pipeline,
            pipeline_kommo_id=1,
            status=stage,
            status_kommo_id=11,
            created_at=timezone.now(),
            **fields,
        )

    moving = deal("Moving deal", raw={"closest_task_at": 1900000000})
    contact = Contact.objects.create(account=account, kommo_id=7, name="Ann")
    Stakeholder.objects.create(
        account=account,
        lead=moving,
        contact=contact,
        role=Role.objects.get(code="decision_maker"),
        approval_status="approved",
        last_touch=timezone.now(),
        source=Stakeholder.Source.CONTACT_FIELD,
        name="Ann",
    )
    deal("Forgotten deal")  # nobody identified, no open task
    stuck_states_refresh(account=account)  # as the beat task does
    head = User.objects.create_user("dana", password="pw")
    head.groups.add(Group.objects.get(name="Head of sales"))
    client.force_login(head)

    everything = client.get(reverse("stakeholders:deal_list"))
    stuck = client.get(reverse("stakeholders:deal_list"), {"stuck": "on"})

    assert {row.deal.name for row in everything.context["rows"]} == {"Moving deal", "Forgotten deal"}
    assert [row.deal.name for row in stuck.context["rows"]] == ["Forgotten deal"]
    (flags,) = [row.flags for row in stuck.context["rows"]]
    assert flags == ["Stuck: no stakeholder identified · no open task"]
    assert "Stuck" in everything.content.decode()


def test_the_stuck_filter_and_badges_are_the_stored_stuck_states_not_a_live_evaluation(
    client, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = KommoAccountFactory(name="Acme", base_url="https://acme.kommo.com")
    pipeline = PipelineFactory(account=account, kommo_id=1, name="B2B")
    stage = StatusFactory(account=account, pipeline=pipeline, kommo_id=11, name="Legal review", sort=50)
    deals = [
        Lead.objects.create(
            account=account,
            kommo_id=200 + number,
            name=f"Deal {number}",
            pipeline=pipeline,
            pipeline_kommo_id=1,
            status=stage,
            status_kommo_id=11,
            created_at=timezone.now(),
            raw={"closest_task_at": 1900000000} if number % 2 else {},
        )
        for number in range(6)
    ]
    stuck_states_refresh(account=account)
    # Since the refresh: one deal got an open task (stuck no more, live), another lost its own and one
    # was closed; the states say what the last refresh said, except that a closed deal is never stuck.
    Lead.objects.filter(pk=deals[0].pk).update(raw={"closest_task_at": 1900000000})
    Lead.objects.filter(pk=deals[1].pk).update(raw={})
    Lead.objects.filter(pk=deals[2].pk).update(status_kommo_id=142)

    def refuse(**kwargs: object) -> None:
        raise AssertionError("the deal list evaluated the stuck deals live")

    monkeypatch.setattr(export_stuck, "stuck_deals", refuse)
    head = User.objects.create_user("dana", password="pw")
    head.groups.add(Group.objects.get(name="Head of sales"))
    client.force_login(head)

    stuck = client.get(reverse("stakeholders:deal_list"), {"stuck": "on"})

    states = StuckState.objects.exclude(reasons="").exclude(lead__status_kommo_id=142)
    stored = dict(states.values_list("lead__name", "text"))
    # Every deal lacks a stakeholder; the even ones lacked an open task at the refresh.
    assert stored["Deal 0"] == "no stakeholder identified · no open task"  # live: it has a task now
    assert stored["Deal 1"] == "no stakeholder identified"  # live: it has lost its task
    assert sorted(stored) == ["Deal 0", "Deal 1", "Deal 3", "Deal 4", "Deal 5"]  # Deal 2 is won
    assert {row.deal.name: row.flags for row in stuck.context["rows"]} == {
        name: [f"Stuck: {text}"] for name, text in stored.items()
    }


# -- how old the stuck states are, and the queued refresh -----------------------------------------------


@pytest.fixture
def frozen_now():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The accounts whose stuck-states refresh a request queued (the task is recorded, not run)."""
    sent: list[int] = []
    monkeypatch.setattr(stuck_refresh_account, "delay", sent.append)
    return sent


def _refuse(**kwargs: object) -> None:
    raise AssertionError("the deal list evaluated the stuck deals inside the request")


def _note(html: str) -> str:
    """The words beside the deal list's Stuck filter."""
    found = re.search(r'<span class="filter-note[^"]*" data-filter="stuck">\((.*?)\)</span>', html)
    assert found is not None, "no note beside the Stuck filter"
    return found.group(1)


def test_the_deal_list_says_when_its_stuck_states_are_from_and_queues_nothing_while_they_are_fresh(
    client, desk: Desk, frozen_now, queued, monkeypatch
) -> None:
    desk.deal("Northwind", price=80_000, open_task=False)
    with time_machine.travel(NOW - dt.timedelta(minutes=15), tick=False):
        stuck_states_refresh(account=desk.account)  # the beat, 15 minutes ago: within two intervals
    client.force_login(person("head", "Head of sales"))
    monkeypatch.setattr(export_stuck, "stuck_deals", _refuse)

    html = client.get(reverse("stakeholders:deal_list"), {"stuck": "on"}).content.decode()

    assert _note(html) == "as of 01 May 2025 11:45"
    assert "Stuck: no stakeholder identified · no open task" in html
    assert queued == []


def test_stale_stuck_states_on_the_deal_list_queue_one_refresh_and_are_never_computed_in_the_request(
    client, desk: Desk, frozen_now, queued, monkeypatch, django_assert_max_num_queries
) -> None:
    desk.deal("Northwind", price=80_000, open_task=False)
    with time_machine.travel(NOW - dt.timedelta(minutes=21), tick=False):
        stuck_states_refresh(account=desk.account)  # the beat has not run for over two intervals
    desk.deal("Latecomer", price=90_000, open_task=False)  # stuck since: not listed until the refresh
    client.force_login(person("head", "Head of sales"))
    monkeypatch.setattr(export_stuck, "stuck_deals", _refuse)

    with django_assert_max_num_queries(16):  # the list's reads, the freshness and one claim
        html = client.get(reverse("stakeholders:deal_list"), {"stuck": "on"}).content.decode()
    again = client.get(reverse("stakeholders:deal_list")).content.decode()  # a second viewer

    assert _note(html) == "as of 01 May 2025 11:39, stale; a refresh is queued"
    assert _note(again) == _note(html)
    assert "Northwind" in html and "Latecomer" not in html
    assert queued == [desk.account.pk]  # one refresh for both viewers
    assert StuckRefresh.objects.get(account=desk.account).queued_at == NOW

    with pytest.MonkeyPatch.context() as patch:  # the worker runs the selector
        patch.setattr(export_stuck, "stuck_deals", stuck_deals)
        stuck_refresh_account(*queued)
    frozen_now.move_to(NOW + dt.timedelta(minutes=1))
    html = client.get(reverse("stakeholders:deal_list"), {"stuck": "on"}).content.decode()
    assert _note(html) == "as of 01 May 2025 12:00"
    assert "Latecomer" in html


def test_a_deal_list_whose_stuck_states_were_never_computed_says_being_computed(
    client, desk: Desk, frozen_now, queued, monkeypatch
) -> None:
    desk.deal("Northwind", price=80_000, open_task=False)
    client.force_login(person("head", "Head of sales"))
    monkeypatch.setattr(export_stuck, "stuck_deals", _refuse)

    html = client.get(reverse("stakeholders:deal_list")).content.decode()

    assert _note(html) == "being computed; a refresh is queued"
    assert queued == [desk.account.pk]
    assert not StuckState.objects.exists()


def test_a_manager_without_deals_sees_no_note_and_queues_nothing(client, desk: Desk, queued) -> None:
    client.force_login(person("nobody", "Manager"))

    html = client.get(reverse("stakeholders:deal_list")).content.decode()

    assert 'data-filter="stuck"' not in html
    assert queued == []
