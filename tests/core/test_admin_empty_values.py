"""The admin says "nothing here" one way: a long dash, in every list."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def test_an_empty_column_of_a_mirror_list_is_the_long_dash(admin_client) -> None:
    ContactFactory(name="Nobody's contact")  # no company

    html = admin_client.get(reverse("admin:kommo_contact_changelist")).content.decode()

    row = html[html.index("Nobody&#x27;s contact") :].split("</tr>", 1)[0]
    company = re.search(r'<td class="field-company[^"]*"[^>]*>(.*?)</td>', row, re.S)
    assert company is not None and company.group(1).strip() == "—"
