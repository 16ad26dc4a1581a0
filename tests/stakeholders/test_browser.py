"""A manager, in Chromium, changes an approval on their deal's page; the Kommo sandbox receives it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from apps.kommo.models.mirror import KommoUser
from apps.stakeholders.bootstrap import account_bootstrap
from apps.stakeholders.models import FieldMapping, Stakeholder
from apps.users.models import User
from tests.stakeholders.conftest import client_for, connect, mirror_sync
from tests.support.browser import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.sandbox]


def test_a_manager_approves_a_stakeholder_and_kommo_has_it(demo_sandbox, live_server, chromium, tmp_path):
    account = connect(demo_sandbox)
    client = client_for(account, tmp_path)
    account_bootstrap(account=account, public_url=live_server.url, client=client)
    mirror_sync(account=account, client=client)
    pending = (
        Stakeholder.objects.filter(
            account=account, approval_status="pending", lead__responsible_user__isnull=False
        )
        .select_related("lead__responsible_user", "catalog_element")
        .order_by("lead__kommo_id", "id")
        .first()
    )
    assert pending is not None
    manager: KommoUser = pending.lead.responsible_user
    user = User.objects.create_user("manager", password="secret-pass-1", kommo_user_id=manager.kommo_id)
    user.groups.add(Group.objects.get(name="Manager"))

    page = chromium.new_page()
    sign_in(page, f"{live_server.url}/deals/", "manager")
    page.click(f"a[href='/deals/{pending.lead_id}/']")
    row = page.locator(f"#stakeholder-{pending.pk}")
    assert row.locator("td").first.inner_text() == pending.name
    assert row.locator("td.approval .tag").inner_text() == "Pending"
    row.locator("select[name$=approval_status]").select_option("approved")
    row.locator("button[type=submit]").click()
    page.wait_for_selector(".messages .success")

    assert page.locator(".messages").inner_text() == f"{pending.name}: saved in Kommo."
    assert page.locator(f"#stakeholder-{pending.pk} td.approval .tag").inner_text() == "Approved"
    catalog_id = FieldMapping.objects.get(account=account, attribute="approval_status").catalog_id
    (element,) = client.catalog_elements_list(catalog_id, {"id": [pending.catalog_element.kommo_id]})
    approval_field = FieldMapping.objects.get(account=account, attribute="approval_status").field_id
    assert element.field(approval_field).values[0].value == "Approved"
