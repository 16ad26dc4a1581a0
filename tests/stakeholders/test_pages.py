"""The managers' pages: who sees which deal, what a deal page shows, and saving a change."""

import datetime as dt

import pytest
import responses
from django.contrib.auth.models import Group
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.core.locks import advisory_lock_key
from apps.kommo.models.mirror import Lead, StageChange, Status
from apps.kommo.provenance import MirrorSource, Provenance
from apps.stakeholders.models import Approval, Stakeholder
from apps.stakeholders.services import (
    NewStakeholder,
    StakeholderChange,
    StakeholderWriteError,
    stakeholder_add_in_kommo,
)
from apps.users.models import User
from tests.factories import PipelineFactory, StatusFactory
from tests.stakeholders.conftest import BASE_URL, mirror_recorded_deal

pytestmark = pytest.mark.django_db

RESPONSIBLE = 504141  # the recorded deal's responsible user


def person(username: str, group: str, kommo_user_id: int | None = None) -> User:
    user = User.objects.create_user(username, password="secret-pass-1", kommo_user_id=kommo_user_id)
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def deal(mapped_account) -> Lead:
    pipeline = PipelineFactory(account=mapped_account, kommo_id=61000, name="B2B sales")
    for kommo_id, name, sort in ((61001, "DM qualification", 20), (61002, "Technical validation", 30)):
        StatusFactory(account=mapped_account, pipeline=pipeline, kommo_id=kommo_id, name=name, sort=sort)
    mirror_recorded_deal(mapped_account)
    lead = Lead.objects.get(kommo_id=5001)
    StageChange.objects.create(
        account=mapped_account,
        lead=lead,
        from_status=Status.objects.get(kommo_id=61001),
        from_status_kommo_id=61001,
        to_status=Status.objects.get(kommo_id=61002),
        to_status_kommo_id=61002,
        at=dt.datetime(2024, 6, 2, 9, 30, tzinfo=dt.UTC),
        source=StageChange.Source.WEBHOOK,
    )
    return lead


@pytest.fixture
def other_deal(mapped_account) -> Lead:
    return Lead.objects.create(
        account=mapped_account,
        kommo_id=5002,
        name="Bluefin Analytics — Data platform",
        pipeline_kommo_id=61000,
        status_kommo_id=61001,
        responsible_user_kommo_id=777,
    )


def test_signing_in_is_required(client, deal):
    response = client.get(reverse("stakeholders:deal_list"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_a_manager_can_sign_in_without_admin_rights(client, deal):
    person("chris", "Manager", RESPONSIBLE)

    response = client.post(reverse("login"), {"username": "chris", "password": "secret-pass-1"})

    assert response.status_code == 302
    assert response["Location"] == reverse("stakeholders:deal_list")


def test_a_manager_sees_only_their_own_deals(client, deal, other_deal):
    client.force_login(person("chris", "Manager", RESPONSIBLE))

    response = client.get(reverse("stakeholders:deal_list"))

    assert [row.deal for row in response.context["rows"]] == [deal]
    page = response.content.decode()
    assert "Northwind Logistics — Fleet analytics" in page
    assert "Bluefin Analytics" not in page


def test_the_head_of_sales_sees_every_deal_and_which_lack_a_decision_maker(client, deal, other_deal):
    client.force_login(person("dana", "Head of sales"))

    response = client.get(reverse("stakeholders:deal_list"))

    summaries = {row.deal.kommo_id: row.summary for row in response.context["rows"]}
    assert set(summaries) == {5001, 5002}
    assert summaries[5001].has_decision_maker is True
    assert summaries[5002].has_decision_maker is False
    assert response.content.decode().count("No decision maker") == 1


@pytest.mark.parametrize("group", ["Sales ops", None], ids=["sales-ops", "superuser"])
def test_sales_ops_and_superusers_see_every_deal(client, deal, other_deal, group):
    if group is None:
        user = User.objects.create_superuser("root", password="secret-pass-1")
    else:
        user = person("sam", group)
    client.force_login(user)

    response = client.get(reverse("stakeholders:deal_list"))

    assert {row.deal.kommo_id for row in response.context["rows"]} == {5001, 5002}
    assert client.get(reverse("stakeholders:deal_detail", args=[other_deal.pk])).status_code == 200


def test_the_deal_list_is_paged_newest_change_first(client, deal, other_deal, monkeypatch):
    monkeypatch.setattr("apps.stakeholders.views.DEALS_PER_PAGE", 1)
    Lead.objects.filter(pk=other_deal.pk).update(updated_at=deal.updated_at + dt.timedelta(days=1))
    client.force_login(person("dana", "Head of sales"))

    first = client.get(reverse("stakeholders:deal_list"))
    second = client.get(reverse("stakeholders:deal_list"), {"page": 2})

    assert [row.deal for row in first.context["rows"]] == [other_deal]
    assert [row.deal for row in second.context["rows"]] == [deal]
    assert "Page 1 of 2" in first.content.decode() and 'href="?page=2"' in first.content.decode()


def test_a_manager_without_a_kommo_user_sees_no_deals(client, deal):
    client.force_login(person("priya", "Manager"))

    response = client.get(reverse("stakeholders:deal_list"))

    assert response.context["rows"] == []


def test_another_managers_deal_is_forbidden(client, deal, other_deal):
    client.force_login(person("chris", "Manager", RESPONSIBLE))

    assert client.get(reverse("stakeholders:deal_detail", args=[other_deal.pk])).status_code == 403
    ann = Stakeholder.objects.get(name="Ann Lee")
    update = reverse("stakeholders:stakeholder_update", args=[other_deal.pk, ann.pk])
    assert client.post(update, {}).status_code == 403


def test_a_missing_deal_is_not_found(client, deal):
    client.force_login(person("chris", "Manager", RESPONSIBLE))

    assert client.get(reverse("stakeholders:deal_detail", args=[deal.pk + 1000])).status_code == 404


def test_a_deleted_deal_is_not_found_even_by_its_manager(client, deal):
    client.force_login(person("chris", "Manager", RESPONSIBLE))
    Lead.objects.filter(pk=deal.pk).update(is_deleted=True)

    assert client.get(reverse("stakeholders:deal_detail", args=[deal.pk])).status_code == 404


def test_a_deal_page_shows_stakeholders_stage_and_history(client, deal):
    client.force_login(person("chris", "Manager", RESPONSIBLE))

    response = client.get(reverse("stakeholders:deal_detail", args=[deal.pk]))

    page = response.content.decode()
    assert [form.stakeholder.name for form in response.context["forms"]] == [
        "Ann Lee",
        "Chen Wu",
        "Boris Petrov",
        "External counsel (Hart & Vale)",
    ]
    for text in (
        "Decision maker (economic buyer)",
        "Approved",
        "Rejected",
        "2024-06-01",
        "Contact field and catalog",
    ):
        assert text in page
    assert "Stage: <strong>Technical validation</strong>" in page
    assert "2024-06-02 09:30" in page and "DM qualification" in page


def test_a_deal_pages_queries_do_not_grow_with_its_stakeholders(client, deal):
    client.force_login(person("chris", "Manager", RESPONSIBLE))
    url = reverse("stakeholders:deal_detail", args=[deal.pk])

    with CaptureQueriesContext(connection) as four:
        assert len(client.get(url).context["forms"]) == 4
    Stakeholder.objects.filter(lead=deal).exclude(name="Ann Lee").delete()
    with CaptureQueriesContext(connection) as one:
        assert len(client.get(url).context["forms"]) == 1

    assert len(four.captured_queries) == len(one.captured_queries)


def test_a_deal_page_reads_the_deal_once_with_its_stage_and_pipeline(client, deal):
    client.force_login(person("chris", "Manager", RESPONSIBLE))

    with CaptureQueriesContext(connection) as queries:
        page = client.get(reverse("stakeholders:deal_detail", args=[deal.pk])).content.decode()

    assert "Stage: <strong>Technical validation</strong>" in page and "B2B sales" in page
    sources = [query["sql"].split(" FROM ", 1)[-1].split(" ", 1)[0] for query in queries.captured_queries]
    assert sources.count('"kommo_lead"') == 1
    assert '"kommo_pipeline"' not in sources


def test_saving_an_approval_writes_it_to_kommo_and_shows_it(client, deal, kommo):
    client.force_login(person("chris", "Manager", RESPONSIBLE))
    boris = Stakeholder.objects.get(name="Boris Petrov")
    prefix = f"s{boris.pk}"

    response = client.post(
        reverse("stakeholders:stakeholder_update", args=[deal.pk, boris.pk]),
        {
            f"{prefix}-role": boris.role_id,
            f"{prefix}-approval_status": "approved",
            f"{prefix}-last_touch": "",
        },
        follow=True,
    )

    assert "Boris Petrov: saved in Kommo." in response.content.decode()
    assert Stakeholder.objects.get(pk=boris.pk).approval_status == "approved"
    [[written]] = kommo.bodies("PATCH", "/api/v4/catalogs/7001/elements")
    assert (written["id"], written["custom_fields_values"][0]) == (
        7102,
        {"field_id": 880102, "values": [{"enum_id": 9202}]},
    )


def test_an_approval_for_a_person_without_an_element_says_so_and_offers_to_create_it(client, deal):
    client.force_login(person("chris", "Manager", RESPONSIBLE))
    chen = Stakeholder.objects.get(name="Chen Wu")
    prefix = f"s{chen.pk}"

    response = client.post(
        reverse("stakeholders:stakeholder_update", args=[deal.pk, chen.pk]),
        {f"{prefix}-role": chen.role_id, f"{prefix}-approval_status": "approved", f"{prefix}-last_touch": ""},
    )

    page = response.content.decode()
    assert "Chen Wu: not saved. Chen Wu has no Stakeholders element on this deal" in page
    assert "Kommo has no field" not in page
    assert 'name="create_element" value="1"' in page
    assert response.context["needs_element"] == chen.pk
    assert Stakeholder.objects.get(pk=chen.pk).approval_status == "unknown"


@responses.activate
@pytest.mark.parametrize("person_kind", ["new_contact", "new_element"])
def test_adding_a_new_person_named_as_a_stakeholder_of_the_deal_is_refused_before_kommo(
    client, deal, person_kind
):
    """A second click on Add, or a colleague's add, would be a second contact and element for one person."""
    client.force_login(person("chris", "Manager", RESPONSIBLE))
    role = Stakeholder.objects.get(name="Boris Petrov").role_id

    response = client.post(
        reverse("stakeholders:stakeholder_add", args=[deal.pk]),
        {"add-person": person_kind, "add-name": "  boris   PETROV ", "add-role": role},
    )

    assert response.status_code == 400
    assert "is already a stakeholder of this deal" in response.content.decode()
    assert len(responses.calls) == 0
    assert Stakeholder.objects.filter(lead=deal, name__iexact="Boris Petrov").count() == 1


@pytest.mark.postgres
def test_an_add_while_another_add_on_the_deal_is_under_way_is_refused_before_kommo(client, deal):
    """Two clicks on Add at the same instant are two requests that each pass the form: the second is told
    the first is under way (here another connection holds the deal's add, as a request mid-add does)."""
    client.force_login(person("chris", "Manager", RESPONSIBLE))
    role = Stakeholder.objects.get(name="Boris Petrov").role_id
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [advisory_lock_key(f"stakeholder-add:{deal.pk}")])
        response = client.post(
            reverse("stakeholders:stakeholder_add", args=[deal.pk]),
            {
                "add-person": "new_element",
                "add-name": "Vera Lang",
                "add-role": role,
                "add-approval_status": "unknown",
            },
        )
    finally:
        other.close()  # its session's locks go with it

    assert "Another stakeholder is being added to this deal right now. Try again in a moment." in (
        response.content.decode()
    )
    assert len(responses.calls) == 0
    assert not Stakeholder.objects.filter(lead=deal, name="Vera Lang").exists()


def test_an_add_finds_the_person_again_once_it_holds_the_deal(deal):
    """The add that ended while this one waited for its form has derived the person: not added twice."""
    role = Stakeholder.objects.get(name="Boris Petrov").role
    change = StakeholderChange(role=role, approval_status=Approval.UNKNOWN, last_touch=None)
    new = NewStakeholder(change=change, name=" boris  petrov")

    with pytest.raises(StakeholderWriteError, match="boris  petrov is already a stakeholder of this deal"):
        stakeholder_add_in_kommo(lead=deal, new=new, provenance=Provenance(MirrorSource.MANAGER))
    assert len(responses.calls) == 0


def test_the_deal_list_searches_deal_company_and_contact_names(client, deal, other_deal):
    client.force_login(person("dana", "Head of sales"))

    def found(q: str) -> set[int]:
        response = client.get(reverse("stakeholders:deal_list"), {"q": q})
        return {row.deal.kommo_id for row in response.context["rows"]}

    contact = deal.contact_links.select_related("contact").first().contact
    assert found("bluefin") == {5002}  # the deal's name
    assert found(contact.name.split()[0].upper()) == {5001}  # a contact's name, any case
    assert found("no such thing") == set()


def test_the_deal_list_filters_by_stage_and_missing_decision_maker(client, deal, other_deal):
    client.force_login(person("dana", "Head of sales"))
    validation = Status.objects.get(kommo_id=61002)

    by_stage = client.get(reverse("stakeholders:deal_list"), {"stage": validation.pk})
    without = client.get(reverse("stakeholders:deal_list"), {"no_decision_maker": "on"})

    assert [row.deal for row in by_stage.context["rows"]] == [deal]
    assert [row.deal for row in without.context["rows"]] == [other_deal]
    assert (
        "No deal matches these filters"
        in client.get(reverse("stakeholders:deal_list"), {"q": "zzz"}).content.decode()
    )


def test_the_deal_list_shows_value_and_days_in_stage_and_sorts_by_them(client, deal, other_deal):
    Lead.objects.filter(pk=deal.pk).update(price=500)
    Lead.objects.filter(pk=other_deal.pk).update(price=900, created_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    client.force_login(person("dana", "Head of sales"))

    by_value = client.get(reverse("stakeholders:deal_list"), {"sort": "-value"}).context["rows"]
    by_days = client.get(reverse("stakeholders:deal_list"), {"sort": "-days"}).context["rows"]

    assert [row.deal.price for row in by_value] == [900, 500]
    # The recorded deal entered its stage on 2024-06-02 (its move); the other was created on 2024-01-01.
    days = {row.deal.kommo_id: row.days_in_stage for row in by_days}
    today = timezone.now()
    assert days[5001] == (today - dt.datetime(2024, 6, 2, 9, 30, tzinfo=dt.UTC)).days
    assert days[5002] == (today - dt.datetime(2024, 1, 1, tzinfo=dt.UTC)).days
    assert [row.deal.kommo_id for row in by_days] == [5002, 5001]
    assert [row.kommo_url for row in by_days] == [
        f"{BASE_URL}/leads/detail/5002",
        f"{BASE_URL}/leads/detail/5001",
    ]
