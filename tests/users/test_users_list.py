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
