"""The account page in the admin, in Chromium at 1280 and 1440 px: with its buttons (History, the Connect
menu, Sync now, Backfill history) the header still shows the account's whole name in the breadcrumb, a long
one on two lines."""

from __future__ import annotations

import pytest

from apps.users.models import User
from tests.factories import KommoAccountFactory
from tests.stakeholders.conftest import chromium  # noqa: F401 (fixture)
from tests.support.browser import PASSWORD, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Cut: wider or taller than its box (a third line), or its box beyond the header's title, which clips it
# (the crumbs' arrows once pushed the name's box past it).
CUT = """(crumb) => crumb.scrollWidth > crumb.clientWidth + 1 || crumb.scrollHeight > crumb.clientHeight + 1
    || crumb.getBoundingClientRect().right > crumb.closest("h1").getBoundingClientRect().right + 1"""
CONNECT = "a:not([href]):text-matches('Connect(?!ion)')"  # the menu of the two ways to connect (not the tab)
BUTTONS = ("a[href$='/history/']", CONNECT, "a[href$='/sync-now/']", "a[href$='/backfill-history/']")
LONG_NAME = "Northbeam Industrial Software Holdings Europe"  # 45 characters: at 1280 px, two lines


def test_the_account_page_breadcrumb_shows_the_whole_name_beside_the_buttons(live_server, chromium) -> None:  # noqa: F811
    accounts = [
        KommoAccountFactory(name="Northbeam Software", base_url="https://northbeam.kommo.com"),
        KommoAccountFactory(name=LONG_NAME, base_url="https://northbeam-europe.kommo.com"),
    ]
    User.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    page = chromium.new_page(viewport={"width": 1280, "height": 800})
    sign_in(page, f"{live_server.url}/admin/kommo/kommoaccount/{accounts[0].pk}/change/", "admin")

    lines = {}
    for account in accounts:
        page.goto(f"{live_server.url}/admin/kommo/kommoaccount/{account.pk}/change/")
        for width in (1280, 1440):
            page.set_viewport_size({"width": width, "height": 800})
            crumb = page.locator("#header-inner h1 > :last-child")
            assert crumb.inner_text().replace("\n", " ") == account.name, width
            assert crumb.is_visible() and not crumb.evaluate(CUT), f"{account.name!r} is cut at {width} px"
            lines[account.name, width] = round(crumb.bounding_box()["height"] / 20)  # leading-5: 20 px a line
            for button in BUTTONS:
                assert page.locator(button).locator("visible=true").count() == 1, (button, width)

    # A name that fits keeps to one line; the long one takes two at 1280 px, one at 1440 px.
    assert lines == {
        ("Northbeam Software", 1280): 1,
        ("Northbeam Software", 1440): 1,
        (LONG_NAME, 1280): 2,
        (LONG_NAME, 1440): 1,
    }

    page.locator(CONNECT).locator("visible=true").click()
    assert page.get_by_text("Connect with OAuth").is_visible()
    assert page.get_by_text("Use a long-lived token").is_visible()
