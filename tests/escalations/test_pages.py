"""Who may do what with the limits (sales ops edit, the head of sales views), and the escalations on the
deal page in the admin and on the manager's deal page."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.urls import reverse

from apps.escalations.models import Escalation, HeadOfSales, StageLimit
from apps.escalations.services import escalations_check
from apps.users.models import User
from tests.escalations.conftest import T0, deal, limit
from tests.gates.conftest import MANAGER_ID

pytestmark = pytest.mark.django_db


def member(client, name: str, group: str, **fields):
    user = User.objects.create_user(name, password="pw", is_staff=group != "Manager", **fields)
    user.groups.add(Group.objects.get(name=group))
    client.force_login(user)
    return client


def limit_form(board, **overrides) -> dict[str, object]:
    form: dict[str, object] = {
        "status": board.stage("Legal review").pk,
        "is_active": "on",
        "usual_days": "",
        "limit_days": "14",
        "second_limit_days": "21",
        "task_due_hours": "24",
    }
    form.update(overrides)
    return form


def test_sales_ops_set_a_stages_limits_and_the_head_of_sales(client, board):
    ops = member(client, "olga", "Sales ops")
    response = ops.post(reverse("admin:escalations_stagelimit_add"), limit_form(board))
    assert response.status_code == 302, response.content.decode()[:3000]
    assert StageLimit.objects.get().second_limit_days == 21
    response = ops.post(
        reverse("admin:escalations_headofsales_add"),
        {"account": board.account.pk, "kommo_user": board.head_of_sales.pk},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert HeadOfSales.objects.get().kommo_user == board.head_of_sales
    listing = ops.get(reverse("admin:escalations_stagelimit_changelist")).content.decode()
    assert "Legal review" in listing
    # No usual time entered and too few stays to measure one: the stage's default is shown, and said to be.
    assert "14 days (default)" in listing


def test_the_admin_refuses_a_second_limit_before_the_first_and_a_limit_on_won(client, board):
    ops = member(client, "olga", "Sales ops")
    response = ops.post(
        reverse("admin:escalations_stagelimit_add"), limit_form(board, second_limit_days="10")
    )
    assert response.status_code == 200
    assert "The second limit must be later than the first." in response.content.decode()
    response = ops.post(
        reverse("admin:escalations_stagelimit_add"), limit_form(board, status=board.stage("Closed - won").pk)
    )
    assert response.status_code == 200
    assert "final" in response.content.decode()
    assert not StageLimit.objects.exists()


def test_the_head_of_sales_views_the_limits_and_escalations_and_changes_nothing(client, board, head):
    lead = deal(board)
    stage_limit = limit(board, first="1", second=None)
    with time_machine.travel(T0 + dt.timedelta(days=2), tick=False):
        escalations_check(account_id=board.account.pk)
    escalation = Escalation.objects.get()
    viewer = member(client, "dana", "Head of sales")
    assert viewer.get(reverse("admin:escalations_stagelimit_changelist")).status_code == 200
    assert viewer.get(reverse("admin:escalations_escalation_changelist")).status_code == 200
    assert viewer.get(reverse("admin:escalations_headofsales_changelist")).status_code == 200
    assert viewer.get(reverse("admin:escalations_stagelimit_add")).status_code == 403
    change_url = reverse("admin:escalations_stagelimit_change", args=[stage_limit.pk])
    response = viewer.post(change_url, limit_form(board, limit_days="99"))
    assert response.status_code == 403
    assert StageLimit.objects.get().limit_days == 1
    # The escalation log is read-only for everyone, sales ops included.
    ops = member(client, "olga", "Sales ops")
    page = ops.get(reverse("admin:escalations_escalation_change", args=[escalation.pk])).content.decode()
    assert 'name="_save"' not in page
    assert ops.get(reverse("admin:escalations_escalation_add")).status_code == 403
    # The admin's deal page lists the deal's escalations.
    deal_page = ops.get(reverse("admin:kommo_lead_change", args=[lead.pk])).content.decode()
    assert "escalations (stage time limits)" in deal_page.lower()
    assert "Chris Novak" in deal_page


def test_the_managers_deal_page_shows_the_time_against_the_limits_and_the_escalations(client, board, head):
    lead = deal(board)
    board.stakeholder(lead, "lawyer", approval="pending", name="Lena Lawyer")
    board.rule("Legal review")
    limit(board, first="10", second="20")
    with time_machine.travel(T0 + dt.timedelta(days=21), tick=False):
        escalations_check(account_id=board.account.pk)
        manager = member(client, "chris", "Manager", kommo_user_id=MANAGER_ID)
        page = manager.get(reverse("stakeholders:deal_detail", args=[lead.pk])).content.decode()
    assert "Time in the stage" in page
    assert "for <strong>21 days</strong>" in page
    assert "past the second limit" in page
    assert page.count('class="escalation level-') == 2
    assert "Dana Whitfield" in page and "Chris Novak" in page
    assert "Waiting to be sent to Kommo" in page


def test_a_deal_without_a_limit_or_escalation_has_no_such_section(client, board):
    lead = deal(board)
    manager = member(client, "chris", "Manager", kommo_user_id=MANAGER_ID)
    page = manager.get(reverse("stakeholders:deal_detail", args=[lead.pk])).content.decode()
    assert "Time in the stage" not in page
