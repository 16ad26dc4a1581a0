import pytest

from tests.reports.support import ANN, BOB, DM, TECH, day, deal_create, html_table, person

pytestmark = pytest.mark.django_db


@pytest.fixture
def deals(world):
    deal_create(world, price=100, created=day(4, 1), moves=[(DM, TECH, day(4, 10))], manager=ANN)
    deal_create(world, price=300, created=day(4, 2), manager=BOB)
    return world


def stages(client, user, query=""):
    client.force_login(user)
    response = client.get(f"/reports/pipeline/{query}")
    assert response.status_code == 200
    return html_table(response.content.decode(), "stages")[1:]


@pytest.mark.parametrize("url", ["/reports/", "/reports/pipeline/", "/reports/pipeline/?format=csv"])
def test_anonymous_visitors_are_sent_to_sign_in(client, url):
    response = client.get(url)

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("group", ["Head of sales", "Sales ops"])
def test_the_head_of_sales_and_sales_ops_see_every_deal(client, deals, frozen, group):
    assert stages(client, person("someone", group)) == [
        ["DM qualification", "1", "300", "75.0"],
        ["Technical validation", "1", "100", "25.0"],
    ]


def test_a_manager_sees_the_same_pages_limited_to_their_own_deals(client, deals, frozen):
    ann = person("ann", "Manager", kommo_user_id=ANN)

    assert stages(client, ann) == [["Technical validation", "1", "100", "100.0"]]
    # The manager filter is not theirs to change.
    assert stages(client, ann, f"?manager={deals.bob.pk}") == [["Technical validation", "1", "100", "100.0"]]
    client.force_login(ann)
    assert b"count your deals only" in client.get("/reports/").content
    assert b'name="manager"' not in client.get("/reports/pipeline/").content


def test_a_manager_not_linked_to_a_kommo_user_sees_no_deal(client, deals, frozen):
    assert stages(client, person("new", "Manager")) == []


def test_someone_in_no_reporting_group_is_refused(client, deals):
    client.force_login(person("guest"))

    assert client.get("/reports/").status_code == 403
    assert client.get("/reports/pipeline/").status_code == 403


def test_the_overview_links_every_report_and_an_unknown_one_is_404(client, deals):
    client.force_login(person("head", "Head of sales"))

    html = client.get("/reports/").content.decode()
    assert 'href="/reports/pipeline/"' in html
    assert client.get("/reports/nothing/").status_code == 404


def test_the_head_of_sales_group_holds_the_reports_permission(db):
    assert person("head", "Head of sales").has_perm("reports.view_reports")
    assert person("ops", "Sales ops").has_perm("reports.view_reports")
    assert not person("ann", "Manager").has_perm("reports.view_reports")
