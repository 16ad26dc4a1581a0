"""The admin's deal page in Chromium, as sales ops scroll it: every section readable down to the last one,
which unfold's sticky bottom bar ("Close", the save row) must not cover. The screenshot goes to
``.run/screenshots/admin-deal-page-end.png``."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import Group

from apps.users.models import User
from tests.stakeholders.conftest import chromium  # noqa: F401 (fixture)
from tests.support.browser import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / ".run" / "screenshots"


def test_the_last_section_of_the_deal_page_is_above_the_bottom_bar_and_opens(board, live_server, chromium):  # noqa: F811
    lead = board.lead("Northwind renewal", stage="Legal review")
    board.stakeholder(lead, "lawyer", "pending", name="Lena Law")
    board.move(lead, "Signing")
    lead.raw = {"id": lead.kommo_id, "name": lead.name}
    lead.save(update_fields=["raw"])
    ops = User.objects.create_user("olga", password="secret-pass-1", is_staff=True)
    ops.groups.add(Group.objects.get(name="Sales ops"))

    page = chromium.new_page(viewport={"width": 1400, "height": 900})
    sign_in(page, f"{live_server.url}/admin/kommo/lead/{lead.pk}/change/", "olga")
    page.mouse.wheel(0, 100_000)
    page.wait_for_timeout(300)

    bar = page.locator("#submit-row").bounding_box()
    assert bar is not None
    for heading in ("Kommo ids and sync", "Last payload from Kommo"):
        summary = page.locator("summary", has_text=heading)
        box = summary.bounding_box()
        assert box is not None, heading
        # Wholly above the bar, and what is under its middle is the heading itself, not the bar.
        assert box["y"] + box["height"] <= bar["y"], heading
        hit = page.evaluate(
            "([x, y]) => document.elementFromPoint(x, y)?.closest('summary')?.textContent ?? ''",
            [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
        )
        assert heading in hit
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "admin-deal-page-end.png"))

    page.locator("summary", has_text="Kommo ids and sync").click()
    assert page.get_by_text(str(lead.kommo_id), exact=True).first.is_visible()
