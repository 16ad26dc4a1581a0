"""The limits and escalations in Chromium: sales ops' admin pages (the limits, the escalation log, a deal's
page) and the manager's deal page. Screenshots go to ``.run/screenshots/escalations-*.png``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from apps.escalations.services import escalations_check
from apps.users.models import User
from tests.escalations.conftest import deal, limit
from tests.gates.conftest import MANAGER_ID
from tests.stakeholders.conftest import chromium  # noqa: F401 (fixture)
from tests.support.browser import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / ".run" / "screenshots"


def shoot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"escalations-{name}.png"), full_page=True)


def test_sales_ops_and_the_manager_see_the_limits_and_escalations(board, head, live_server, chromium):  # noqa: F811
    lead = deal(board, created_at=timezone.now() - dt.timedelta(days=23))
    board.stakeholder(lead, "lawyer", approval="pending", name="Lena Lawyer")
    board.rule("Legal review")
    deal(board, "Globex pilot", created_at=timezone.now() - dt.timedelta(days=12))
    legal = limit(board, first="10", second="20")
    limit(board, "Technical validation", first="14", second=None)
    assert escalations_check(account_id=board.account.pk).escalated == 3
    ops = User.objects.create_user("olga", password="secret-pass-1", is_staff=True)
    ops.groups.add(Group.objects.get(name="Sales ops"))
    manager = User.objects.create_user("chris", password="secret-pass-1", kommo_user_id=MANAGER_ID)
    manager.groups.add(Group.objects.get(name="Manager"))

    page = chromium.new_page(viewport={"width": 1400, "height": 900})
    sign_in(page, f"{live_server.url}/admin/escalations/stagelimit/", "olga")
    assert "Legal review" in page.locator("#result_list").inner_text()
    shoot(page, "admin-limits")
    page.goto(f"{live_server.url}/admin/escalations/stagelimit/{legal.pk}/change/")
    assert "the default (only 0 stays completed in 180 days)" in page.locator("#stagelimit_form").inner_text()
    shoot(page, "admin-limit-form")
    page.goto(f"{live_server.url}/admin/escalations/escalation/")
    assert page.locator("#result_list tbody tr").count() == 3
    shoot(page, "admin-log")
    page.goto(f"{live_server.url}/admin/kommo/lead/{lead.pk}/change/")
    assert "Lena Lawyer" in page.content()
    shoot(page, "admin-deal")

    page.context.clear_cookies()
    sign_in(page, f"{live_server.url}/deals/{lead.pk}/", "chris")
    section = page.locator("section.stage-limits")
    assert "past the second limit" in section.inner_text()
    assert section.locator("tr.escalation").count() == 2
    section.scroll_into_view_if_needed()
    shoot(page, "deal-page")
