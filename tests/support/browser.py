"""What the Chromium tests share besides the ``chromium`` fixture (tests/stakeholders/conftest.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

# The password the browser tests give the people they create.
PASSWORD = "secret-pass-1"


def sign_in(page: Page, url: str, username: str, password: str = PASSWORD) -> None:
    """Open ``url`` signed out and sign in as ``username`` on the form shown: the page a signed-out visitor
    is sent to from ``url`` (the portal's or the admin's sign-in page), which sends them back to ``url``;
    or ``url`` itself when it is a sign-in page. Returns once the browser has left the sign-in page and
    the page it landed on has loaded, which is ``url`` unless that was the sign-in page."""
    page.goto(url)
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda address: "/login/" not in address)
    if "/login/" not in url:
        assert page.url == url, f"signed in as {username}, the browser is at {page.url}, not at {url}"
