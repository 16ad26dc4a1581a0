import csv
import io

import pytest

from tests.reports.support import BOB, BUDGET, DM, SIGNING, TECH, WON, day, deal_create, html_table, person

pytestmark = pytest.mark.django_db


@pytest.fixture
def deals(world):
    deal_create(world, price=100, created=day(4, 1), moves=[(DM, TECH, day(4, 10))])
    deal_create(
        world,
        price=300,
        created=day(4, 2),
        moves=[(DM, TECH, day(4, 5)), (TECH, BUDGET, day(5, 1))],
        manager=BOB,
    )
    deal_create(world, price=600, created=day(1, 10))
    deal_create(
        world, price=1000, created=day(4, 3), moves=[(DM, SIGNING, day(4, 3)), (SIGNING, WON, day(4, 20))]
    )
    return world


@pytest.fixture
def head(db):
    return person("head", "Head of sales")


def page(client, user, query=""):
    client.force_login(user)
    response = client.get(f"/reports/pipeline/{query}")
    assert response.status_code == 200
    return response.content.decode()


def test_open_deals_per_stage_count_value_and_share_of_value(client, deals, head, frozen):
    html = page(client, head)

    assert html_table(html, "stages") == [
        ["Stage", "Open deals", "Value", "Share of value (%)"],
        ["DM qualification", "1", "600", "60.0"],
        ["Technical validation", "1", "100", "10.0"],
        ["Budget approval", "1", "300", "30.0"],
    ]
    assert html_table(html, "managers")[1:] == [
        ["Ann Lee", "2", "700", "70.0"],
        ["Bob Stone", "1", "300", "30.0"],
    ]


def test_the_manager_filter_and_a_past_period_change_the_figures(client, deals, head, frozen):
    assert html_table(page(client, head, f"?manager={deals.bob.pk}"), "stages")[1:] == [
        ["Budget approval", "1", "300", "100.0"]
    ]
    # At the end of last quarter (1 April, midnight) only the deal created in January was open.
    assert html_table(page(client, head, "?period=last_quarter"), "stages")[1:] == [
        ["DM qualification", "1", "600", "100.0"]
    ]


def test_the_csv_is_the_table(client, deals, head, frozen):
    html = page(client, head)

    for key in ("stages", "managers"):
        response = client.get(f"/reports/pipeline/?format=csv&table={key}")
        assert response["Content-Type"].startswith("text/csv")
        assert list(csv.reader(io.StringIO(response.content.decode()))) == html_table(html, key)


def test_a_chart_with_an_accessible_label_draws_the_tables_numbers(client, deals, head, frozen):
    html = page(client, head)

    assert 'role="img" aria-label="Value of open deals by stage' in html
    assert '"data": [600.0, 100.0, 300.0]' in html
