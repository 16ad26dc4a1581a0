""" "Sync now" on a Kommo account in the admin: an incremental sync against the sandbox, its result shown."""

import re

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from apps.kommo.models import Lead
from apps.users.models import User
from tests.kommo.sandbox_support import account_for

pytestmark = [pytest.mark.django_db, pytest.mark.sandbox]


def messages_of(response) -> str:
    return " ".join(str(message) for message in response.context["messages"])


def test_sync_now_mirrors_the_account_and_says_what_changed(admin_client, demo):
    account = account_for(demo)

    first = admin_client.post(
        reverse("admin:kommo_kommoaccount_changelist"),
        {"action": "sync_now", "_selected_action": [account.pk]},
        follow=True,
    )
    again = admin_client.get(
        reverse("admin:kommo_kommoaccount_sync_now_detail", args=[account.pk]), follow=True
    )

    # The demo's 45 current deals and its year of history (300 more).
    assert Lead.objects.filter(account=account).count() == 345
    assert messages_of(first).startswith("Sandbox synced: pipelines ")
    assert "leads 345 created, 0 updated, 0 unchanged" in messages_of(first)
    # Counts of a thousand and more with their separator, as the command's summary writes them.
    assert re.search(r"catalogs \d{1,3}(,\d{3})+ created", messages_of(first))
    assert not re.search(r"\d{4}", messages_of(first).split(": ", 1)[1])
    assert again.redirect_chain[-1][0] == reverse("admin:kommo_kommoaccount_change", args=[account.pk])
    assert "leads 0 created" in messages_of(again)


def test_the_head_of_sales_cannot_sync(demo):
    account = account_for(demo)
    head = User.objects.create_user("hana", is_staff=True)
    head.groups.add(Group.objects.get(name="Head of sales"))
    client = Client()
    client.force_login(head)

    page = client.get(reverse("admin:kommo_kommoaccount_changelist")).content.decode()
    client.get(reverse("admin:kommo_kommoaccount_sync_now_detail", args=[account.pk]))

    assert "sync_now" not in page
    assert not Lead.objects.filter(account=account).exists()
