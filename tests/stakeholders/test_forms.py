"""The stakeholder form's last touch: Kommo holds a day, the portal a moment."""

import datetime as dt

import pytest
from django.utils import timezone

from apps.stakeholders.forms import StakeholderForm
from apps.stakeholders.models import Approval, Stakeholder

pytestmark = pytest.mark.django_db

TOUCHED = dt.datetime(2024, 6, 3, 14, 45, tzinfo=dt.UTC)


def chosen_moment(current: dt.datetime | None, day: str) -> dt.datetime | None:
    stakeholder = Stakeholder(pk=1, approval_status=Approval.UNKNOWN, last_touch=current)
    form = StakeholderForm(
        {"s1-role": "", "s1-approval_status": Approval.UNKNOWN, "s1-last_touch": day}, stakeholder=stakeholder
    )
    assert form.is_valid(), form.errors
    return form.last_touch_moment(current)


def test_an_unchanged_day_keeps_the_stakeholders_moment_so_nothing_is_written():
    assert chosen_moment(TOUCHED, "2024-06-03") == TOUCHED


def test_a_new_day_is_midnight_of_that_day_in_the_portals_time_zone():
    expected = timezone.make_aware(dt.datetime(2024, 6, 5))
    assert chosen_moment(TOUCHED, "2024-06-05") == expected
    assert chosen_moment(None, "2024-06-05") == expected


def test_an_emptied_day_clears_the_last_touch():
    assert chosen_moment(TOUCHED, "") is None
