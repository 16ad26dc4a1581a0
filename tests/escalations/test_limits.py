"""The limits and their levels, on a frozen clock: one task for the manager past the first limit, one for
the head of sales past the second, never two for the same deal, stay and level."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from apps.escalations.models import Escalation
from apps.escalations.services import escalations_check
from apps.kommo.models import OutboundChange
from tests.escalations.conftest import T0, deal, limit, move
from tests.gates.conftest import HEAD_OF_SALES_ID, MANAGER_ID

pytestmark = pytest.mark.django_db

Level = Escalation.Level


def at(days: float) -> time_machine.travel:
    return time_machine.travel(T0 + dt.timedelta(days=days), tick=False)


def tasks() -> list[OutboundChange]:
    return list(OutboundChange.objects.filter(kind=OutboundChange.Kind.TASK_CREATE).order_by("id"))


def test_the_manager_is_tasked_once_past_the_first_limit_and_the_head_of_sales_once_past_the_second(
    board, head
):
    lead = deal(board)
    board.stakeholder(lead, "lawyer", approval="pending", name="Lena Lawyer")
    board.rule("Legal review")
    limit(board, first="10", second="20")

    with at(9.9):
        assert escalations_check(account_id=board.account.pk).escalated == 0
    with at(10.5):
        assert escalations_check(account_id=board.account.pk).escalated == 1
    with at(11):
        again = escalations_check(account_id=board.account.pk)
    assert (again.escalated, again.already) == (0, 1)

    first = Escalation.objects.get()
    assert (first.level, first.recipient_kommo_id, first.days_in_stage) == (Level.MANAGER, MANAGER_ID, 10.5)
    assert first.stay_entered_at == T0
    [task] = tasks()
    assert task.payload["responsible_user_id"] == MANAGER_ID
    text = task.payload["text"]
    assert "Acme renewal has been in Legal review for 10 days, past its limit of 10 days" in text
    assert "lawyer" in text.lower() and "approved" in text.lower()  # what is missing, in the report's words
    assert first.missing and any("approved" in item for item in first.missing)
    assert "[portal escalation 1 · deal" in text

    with at(20.5):
        assert escalations_check(account_id=board.account.pk).escalated == 1
    with at(25):
        assert escalations_check(account_id=board.account.pk).escalated == 0
    second = Escalation.objects.get(level=Level.HEAD_OF_SALES)
    assert second.recipient_kommo_id == HEAD_OF_SALES_ID
    assert [task.payload["responsible_user_id"] for task in tasks()] == [MANAGER_ID, HEAD_OF_SALES_ID]
    escalated = tasks()[1].payload["text"]
    assert "Escalation: Acme renewal (Chris Novak) has been in Legal review for 20 days" in escalated
    assert Escalation.objects.count() == 2


def test_both_levels_at_once_when_the_deal_is_already_past_the_second_limit(board, head):
    deal(board)
    limit(board, first="3", second="7")
    with at(8):
        result = escalations_check(account_id=board.account.pk)
    assert result.escalated == 2
    assert sorted(Escalation.objects.values_list("level", flat=True)) == [1, 2]


def test_a_deal_that_leaves_and_comes_back_starts_a_new_stay_and_is_escalated_again(board, head):
    lead = deal(board)
    limit(board, first="10", second=None)
    with at(11):
        escalations_check(account_id=board.account.pk)
    move(board, lead, "Signing", at=T0 + dt.timedelta(days=12))
    move(board, lead, "Legal review", at=T0 + dt.timedelta(days=13))
    with at(20):  # 7 days into the new stay: within the limit
        assert escalations_check(account_id=board.account.pk).escalated == 0
    with at(23.5):
        assert escalations_check(account_id=board.account.pk).escalated == 1
    stays = list(Escalation.objects.order_by("escalated_at").values_list("stay_entered_at", "level"))
    assert stays == [(T0, 1), (T0 + dt.timedelta(days=13), 1)]


def test_deals_elsewhere_closed_or_in_an_inactive_limit_are_left_alone(board, head):
    deal(board, "In signing", "Signing")
    won = deal(board, "Won", "Legal review")
    move(board, won, "Closed - won", at=T0 + dt.timedelta(days=1))
    deleted = deal(board, "Deleted")
    deleted.is_deleted = True
    deleted.save()
    limit(board, "Legal review", first="1", second=None)
    inactive = limit(board, "Signing", first="1", second=None)
    inactive.is_active = False
    inactive.save()
    with at(5):
        assert escalations_check(account_id=board.account.pk).escalated == 0
    assert not Escalation.objects.exists()


def test_without_a_head_of_sales_the_second_level_waits_for_one(board):
    deal(board)
    limit(board, first="1", second="2")
    with at(3):
        result = escalations_check(account_id=board.account.pk)
    assert (result.escalated, result.no_head_of_sales) == (1, 1)
    assert list(Escalation.objects.values_list("level", flat=True)) == [1]


def test_an_escalation_is_never_changed(board):
    deal(board)
    limit(board, first="1", second=None)
    with at(3):
        escalations_check(account_id=board.account.pk)
    escalation = Escalation.objects.get()
    with pytest.raises(TypeError):
        escalation.save()
    with pytest.raises(TypeError):
        Escalation.objects.update(level=2)
