"""The managers' pages in Chromium against the Kommo sandbox: finding deals (search, filters, sort, the link
to Kommo) and working on one (adding a stakeholder, approving one), with Kommo holding the result."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import requests
from django.contrib.auth.models import Group
from django.utils import timezone

from apps.kommo.models.mirror import Lead, Status
from apps.kommo.services.mirror import companies_upsert_from_kommo
from apps.stakeholders.bootstrap import account_bootstrap
from apps.stakeholders.models import FieldMapping, Role, Stakeholder
from apps.users.models import User
from tests.stakeholders.conftest import client_for, connect, contact_only_stakeholder, mirror_sync
from tests.support.browser import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.sandbox]

SCREENSHOTS = Path(__file__).resolve().parents[2] / ".run" / "screenshots"


@pytest.fixture
def prepared(demo_sandbox, live_server, tmp_path):  # type: ignore[no-untyped-def]
    account = connect(demo_sandbox)
    client = client_for(account, tmp_path)
    account_bootstrap(account=account, public_url=live_server.url, client=client)
    # The list tells deals apart by their company: the companies first, so the deals link to them.
    companies_upsert_from_kommo(account=account, companies=list(client.companies_list()))
    mirror_sync(account=account, client=client)
    return account, client


def person(username: str, group: str, kommo_user_id: int | None = None) -> User:
    user = User.objects.create_user(username, password="secret-pass-1", kommo_user_id=kommo_user_id)
    user.groups.add(Group.objects.get(name=group))
    return user


def screenshot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def listed_names(page) -> list[str]:  # type: ignore[no-untyped-def]
    return page.locator("table.deals tbody tr td:first-child strong").all_inner_texts()


def test_the_head_of_sales_searches_filters_and_sorts_deals_and_opens_one_in_kommo(
    prepared, live_server, chromium
):
    account, _ = prepared
    person("dana", "Head of sales")
    page = chromium.new_page(viewport={"width": 1400, "height": 900})
    sign_in(page, f"{live_server.url}/deals/", "dana")
    everything = Lead.objects.filter(account=account, is_deleted=False).count()
    assert f"{everything} deals" in page.locator("main").inner_text()

    # Search by a company: only its deals, each telling its company and creation day.
    deal = Lead.objects.filter(account=account, is_deleted=False, company__isnull=False).order_by("kommo_id")[
        0
    ]
    company = deal.company.name
    page.fill("#id_q", company)
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(r"q="))
    expected = set(
        Lead.objects.filter(account=account, is_deleted=False, company__name__icontains=company).values_list(
            "name", flat=True
        )
    ) | set(
        Lead.objects.filter(account=account, is_deleted=False, name__icontains=company).values_list(
            "name", flat=True
        )
    )
    assert set(listed_names(page)) <= expected | set(
        Lead.objects.filter(account=account, contact_links__contact__name__icontains=company).values_list(
            "name", flat=True
        )
    )
    assert deal.name in listed_names(page)
    row = page.locator(f"tr[data-deal-id='{deal.pk}']")
    assert company in row.inner_text() and f"created {deal.created_at:%Y-%m-%d}" in row.inner_text()

    # The link to Kommo is the deal's Kommo address, and the sandbox answers it with the deal's page.
    href = row.locator("a.kommo").get_attribute("href")
    assert href == f"{account.api_root}/leads/detail/{deal.kommo_id}"
    kommo_page = requests.get(href, timeout=5)
    assert kommo_page.status_code == 200 and deal.name in kommo_page.text

    # A stage, then the deals without a decision maker, sorted by value.
    stage = Status.objects.get(account=account, name="Legal review")
    page.goto(f"{live_server.url}/deals/")
    page.select_option("#id_stage", str(stage.pk))
    page.check("#id_no_decision_maker")
    page.select_option("#id_sort", "-value")
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(r"stage="))
    rows = page.locator("table.deals tbody tr")
    wanted = [
        lead.name
        for lead in Lead.objects.filter(account=account, is_deleted=False, status=stage)
        .exclude(stakeholders__role__is_decision_maker=True)
        .order_by("-price", "-id")
    ]
    assert listed_names(page) == wanted
    for index in range(rows.count()):
        text = rows.nth(index).inner_text()
        assert "Legal review" in text and "No decision maker" in text
    values = [int(v.replace(",", "")) for v in page.locator("table.deals tbody td.value").all_inner_texts()]
    assert values == sorted(values, reverse=True)

    # Every stage of Legal review, by days in stage, as the list shows them.
    page.goto(f"{live_server.url}/deals/?stage={stage.pk}&sort=-days")
    days = [int(v) for v in page.locator("table.deals tbody td.days").all_inner_texts()]
    assert days == sorted(days, reverse=True) and len(days) == Lead.objects.filter(status=stage).count()
    # An approvals badge ("2 pending") stays on one line however narrow its column (a small window).
    page.set_viewport_size({"width": 720, "height": 768})
    for tag in page.locator("table.deals tbody .tag.pending").all():
        box, line = tag.bounding_box(), tag.evaluate("tag => getComputedStyle(tag).lineHeight")
        assert box is not None and box["height"] <= float(line.removesuffix("px")) + 1
    page.set_viewport_size({"width": 1400, "height": 900})
    screenshot(page, "deal-list.png")


def test_a_manager_adds_a_stakeholder_and_approves_one_and_kommo_has_both(prepared, live_server, chromium):
    account, client = prepared
    pending = (
        Stakeholder.objects.filter(
            account=account,
            approval_status="pending",
            catalog_element__isnull=False,
            lead__responsible_user__isnull=False,
        )
        .select_related("lead__responsible_user", "catalog_element")
        .order_by("lead__kommo_id", "id")
        .first()
    )
    assert pending is not None
    deal = pending.lead
    person("manager", "Manager", deal.responsible_user.kommo_id)
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    sign_in(page, f"{live_server.url}/deals/", "manager")
    page.click(f"a[href='/deals/{deal.pk}/']")
    before = Stakeholder.objects.filter(lead=deal).count()

    # A new person, kept as a Stakeholders element, as the deal's lawyer.
    page.select_option("#id_add-person", "new_element")
    page.fill("#id_add-name", "Lena Counsel")
    page.select_option("#id_add-role", label="Lawyer")
    page.click("form.add-stakeholder button[type=submit]")
    page.wait_for_selector(".messages .success")
    assert page.locator(".messages").inner_text() == "Lena Counsel: added in Kommo as lawyer."
    added = Stakeholder.objects.get(lead=deal, name="Lena Counsel")
    assert added.role.code == "lawyer" and Stakeholder.objects.filter(lead=deal).count() == before + 1
    assert page.locator(f"#stakeholder-{added.pk}").inner_text().startswith("Lena Counsel")
    kommo_deal = client.leads_get(deal.kommo_id, with_=("catalog_elements",))
    assert added.catalog_element.kommo_id in {element.id for element in kommo_deal.catalog_elements}

    # An approval: saved in Kommo, and it is a touch, so the last touch is today.
    row = page.locator(f"#stakeholder-{pending.pk}")
    row.locator("select[name$=approval_status]").select_option("approved")
    row.locator("button[type=submit]").first.click()
    page.wait_for_selector(".messages .success")
    assert page.locator(".messages").inner_text() == f"{pending.name}: saved in Kommo."
    today = timezone.localdate()
    row = page.locator(f"#stakeholder-{pending.pk}")
    assert row.locator("td.approval .tag").inner_text() == "Approved"
    assert row.locator("td.last-touch").inner_text() == f"{today:%Y-%m-%d}"
    catalog_id = FieldMapping.objects.get(account=account, attribute="approval_status").catalog_id
    (element,) = client.catalog_elements_list(catalog_id, {"id": [pending.catalog_element.kommo_id]})
    approval = FieldMapping.objects.get(account=account, attribute="approval_status").field_id
    touch = FieldMapping.objects.get(account=account, attribute="last_touch").field_id
    assert element.field(approval).values[0].value == "Approved"
    touched = element.field(touch).values[0].value
    assert isinstance(touched, dt.datetime) and timezone.localdate(touched) == today
    screenshot(page, "deal-page.png")

    # An objection raised under the person: on the page with its weight, and in the person's history.
    life = page.locator(f"#lifecycle-{pending.pk}")
    life.locator("input[name$=objection]").fill("Needs SSO first")
    life.locator("input[name$=objection_weight]").fill("0.6")
    life.locator("button[value=save]").click()
    page.wait_for_selector(".messages .success")
    assert page.locator(".messages").inner_text() == f"{pending.name}: objection raised in Kommo."
    assert (
        "Open objection: “Needs SSO first” · weight 0.6"
        in page.locator(f"#stakeholder-{pending.pk}").inner_text()
    )
    page.locator(f"#lifecycle-{pending.pk} details.timeline summary").click()
    assert "— → Needs SSO first" in page.locator(f"#lifecycle-{pending.pk} details.timeline").inner_text()
    screenshot(page, "deal-page-lifecycle.png")


def test_a_contact_only_stakeholders_approval_offers_their_element_and_creates_it(
    prepared, live_server, chromium
):
    """A person Kommo holds as a contact only (role in the contact's field, no Stakeholders element): the
    approval is kept on the element, so saving it says so and offers to create the element, which saves it."""
    account, client = prepared
    deal = (
        Lead.objects.filter(account=account, is_deleted=False, responsible_user__isnull=False)
        .select_related("responsible_user")
        .order_by("kommo_id")
        .first()
    )
    assert deal is not None
    nora = contact_only_stakeholder(
        account=account, client=client, deal=deal, name="Nora Contact", role=Role.objects.get(code="lawyer")
    )
    assert nora.catalog_element is None
    person("manager", "Manager", deal.responsible_user.kommo_id)
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    sign_in(page, f"{live_server.url}/deals/{deal.pk}/", "manager")

    row = page.locator(f"#stakeholder-{nora.pk}")
    row.locator("select[name$=approval_status]").select_option("approved")
    row.locator("button[type=submit]").first.click()
    page.wait_for_selector(".messages .error")
    assert page.locator(".messages").inner_text() == (
        "Nora Contact: not saved. Nora Contact has no Stakeholders element on this deal, where Kommo keeps "
        "their approval status, last touch and approval's decision date: create the element to save them."
    )
    offer = page.locator(f"#stakeholder-{nora.pk} button[name=create_element]")
    assert offer.inner_text() == "Create their Stakeholders element and save"
    screenshot(page, "deal-page-needs-element.png")

    offer.click()
    page.wait_for_selector(".messages .success")
    assert page.locator(".messages").inner_text() == "Nora Contact: saved in Kommo."
    row = Stakeholder.objects.get(lead=deal, name="Nora Contact")
    assert (row.approval_status, row.source) == ("approved", "both") and row.catalog_element is not None
    assert page.locator(f"#stakeholder-{row.pk} td.approval .tag").inner_text() == "Approved"
