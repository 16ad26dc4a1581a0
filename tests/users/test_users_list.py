"""The admin's users list says "nothing here" one way in every column."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from apps.users.models import User

pytestmark = pytest.mark.django_db


def test_every_empty_value_of_the_users_list_is_the_same_dash(admin_client) -> None:
    User.objects.create_user("bob", password="pw")  # no e-mail, no names, no job, no Kommo user

    html = admin_client.get(reverse("admin:users_user_changelist"), {"q": "bob"}).content.decode()

    row = html[html.index(">bob<") :].split("</tr>", 1)[0]
    cells = re.findall(r'<td class="field-(\w+)[^"]*"[^>]*>(.*?)</td>', row, re.S)
    shown = {name: text.strip() for name, text in cells}
    assert {
        name: shown[name] for name in ("email", "first_name", "last_name", "job", "kommo_user")
    } == dict.fromkeys(("email", "first_name", "last_name", "job", "kommo_user"), "—")


def test_the_users_list_reads_the_kommo_users_with_the_page_not_one_query_per_row(admin_client) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.factories import KommoAccountFactory, KommoUserFactory

    account = KommoAccountFactory()
    KommoUserFactory(account=account, kommo_id=501, name="Chris Novak")
    User.objects.create_user("chris", password="pw", kommo_user_id=501)
    User.objects.create_user("ghost", password="pw", kommo_user_id=999)  # not in the mirror

    def listed() -> tuple[int, str]:
        with CaptureQueriesContext(connection) as queries:
            html = admin_client.get(reverse("admin:users_user_changelist")).content.decode()
        return len(queries), html

    few, html = listed()
    for number in range(5):
        KommoUserFactory(account=account, kommo_id=600 + number, name=f"Manager {number}")
        User.objects.create_user(f"manager{number}", password="pw", kommo_user_id=600 + number)
    many, more = listed()

    assert ">Chris Novak</td>" in html and ">Kommo user 999</td>" in html
    assert ">Manager 4</td>" in more
    assert many == few
