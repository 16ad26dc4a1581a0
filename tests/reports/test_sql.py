"""The portable SQL pieces of apps/reports/sql.py give the same answer on PostgreSQL and SQLite."""

from __future__ import annotations

import datetime as dt

import pytest

from apps.kommo.models import StageStay
from apps.reports.sql import DaysBetween, SecondsBetween
from tests.reports.desk import days_ago, make_desk

pytestmark = pytest.mark.django_db


def test_seconds_between_is_exact_or_whole_and_days_between_has_the_fraction() -> None:
    desk = make_desk()
    lead = desk.deal(entered_days_ago=None)
    entered = days_ago(3)
    desk.stay(lead, "Technical validation", entered=entered, left=entered + dt.timedelta(seconds=90061.75))

    row = StageStay.objects.annotate(
        exact=SecondsBetween("left_at", "entered_at"),
        whole=SecondsBetween("left_at", "entered_at", whole=True),
        days=DaysBetween("left_at", "entered_at"),
    ).get(lead=lead)

    assert row.exact == pytest.approx(90061.75, abs=1e-3)
    assert row.whole == 90061
    assert isinstance(row.whole, int)
    assert row.days == pytest.approx(90061.75 / 86400, abs=1e-7)
