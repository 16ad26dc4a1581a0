"""The account page in the admin, in Chromium at 1280 and 1440 px: with its buttons (History, the Connect
menu, Sync now, Backfill history) the header still shows the account's whole name in the breadcrumb."""

from __future__ import annotations

import pytest

from apps.users.models import User
from tests.factories import KommoAccountFactory
from tests.stakeholders.conftest import chromium  # noqa: F401 (fixture)
from tests.support.browser import PASSWORD, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CUT = "(crumb) => crumb.scrollWidth > crumb.clientWidth + 1"
CONNECT = "a:not([href]):text-matches('Connect(?!ion)')"  # the menu of the two ways to connect (not the tab)
BUTTONS = ("a[href$='/history/']", CONNECT, "a[href$='/sync-now/']", "a[href$='/backfill-history/']")


def test_the_account_page_breadcrumb_shows_the_whole_name_beside_the_buttons(live_server, chromium) -> None:  # noqa: F811
    account = KommoAccountFactory(name="Northbeam Software", base_url="https://northbeam.kommo.com")
    User.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    page = chromium.new_page(viewport={"width": 1280, "height": 800})
    sign_in(page, f"{live_server.url}/admin/kommo/kommoaccount/{account.pk}/change/", "admin")

    for width in (1280, 1440):
        page.set_viewport_size({"width": width, "height": 800})
        crumb = page.locator("#header-inner h1 > :last-child")
        assert crumb.inner_text() == "Northbeam Software", width
        assert crumb.is_visible() and not crumb.evaluate(CUT), f"the name is cut at {width} px"
        for button in BUTTONS:
            assert page.locator(button).locator("visible=true").count() == 1, (button, width)

    page.locator(CONNECT).locator("visible=true").click()
    assert page.get_by_text("Connect with OAuth").is_visible()
    assert page.get_by_text("Use a long-lived token").is_visible()
