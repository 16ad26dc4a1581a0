"""Every report page in Chromium: it renders, its charts draw, no console error, and filters change it."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from django.utils import timezone

from apps.reports.framework import reports_listed
from tests.reports.support import (
    BOB,
    BUDGET,
    DM,
    LEGAL,
    LOST,
    SIGNING,
    TECH,
    WON,
    deal_create,
    person,
    world_create,
)
from tests.stakeholders.conftest import chromium  # noqa: F401 - the fixture
from tests.support.browser import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHARTED = {"pipeline", "funnel", "time-in-stage", "legal-review", "outcomes", "forecast"}

# A canvas has drawn something when some pixel is not transparent.
DRAWN = """canvas => {
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
  return false;
}"""


def history() -> None:
    world = world_create()
    now = timezone.now()

    def ago(days: float) -> dt.datetime:
        return now - dt.timedelta(days=days)

    from apps.gates.models import GateCondition, GateRule
    from apps.stakeholders.models import Role

    rule = GateRule.objects.create(
        account=world.account, name="Lawyer", pipeline=world.pipeline, gated_stage=world.stages[LEGAL]
    )
    lawyer, _ = Role.objects.get_or_create(code="lawyer", defaults={"label": "Lawyer"})
    GateCondition.objects.create(rule=rule, role=lawyer, requirement="approved")
    deal_create(world, price=1200, created=ago(50), moves=[(DM, TECH, ago(40)), (TECH, BUDGET, ago(30))])
    deal_create(
        world, price=800, created=ago(45), moves=[(DM, LEGAL, ago(35))], manager=BOB, name="Old review"
    )
    deal_create(world, price=400, created=ago(44), moves=[(DM, LEGAL, ago(30)), (LEGAL, SIGNING, ago(20))])
    deal_create(world, price=3000, created=ago(55), moves=[(DM, SIGNING, ago(33)), (SIGNING, WON, ago(10))])
    deal_create(
        world, price=500, created=ago(40), moves=[(DM, TECH, ago(35)), (TECH, LOST, ago(5))], manager=BOB
    )
    deal_create(world, price=700, created=ago(20), manager=BOB)
    # The forecast's past quarters come from the backtest, this quarter's from this week's snapshot.
    from apps.reports.forecast_snapshots import forecast_backtest, forecast_snapshot_take

    deal_create(
        world, price=2600, created=ago(300), moves=[(DM, SIGNING, ago(250)), (SIGNING, WON, ago(200))]
    )
    deal_create(world, price=900, created=ago(290), moves=[(DM, TECH, ago(280)), (TECH, LOST, ago(260))])
    forecast_backtest(account=world.account, weeks=40)
    forecast_snapshot_take(account=world.account)


def test_every_report_page_renders_and_draws_its_charts_and_the_filters_change_it(
    live_server,
    chromium,  # noqa: F811 - the fixture
    tmp_path,
):
    history()
    head = person("head", "Head of sales")
    head.set_password("secret-pass-1")
    head.save()
    shots = Path(os.environ.get("REPORTS_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)

    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on(
        "console",
        lambda message: (
            errors.append(f"{message.text} {message.location['url']}") if message.type == "error" else None
        ),
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("response", lambda response: errors.append(response.url) if response.status >= 400 else None)
    sign_in(page, f"{live_server.url}/reports/", "head")
    page.screenshot(path=str(shots / "index.png"), full_page=True)

    for report in reports_listed():
        page.goto(f"{live_server.url}/reports/{report.slug}/")
        assert page.locator("h1").first.inner_text() == report.title
        canvases = page.locator("canvas.report-chart")
        # Pages of this history with nothing to chart (no gate decisions here) show their empty text.
        if report.slug in CHARTED:
            assert canvases.count() >= 1, report.slug
        for index in range(canvases.count()):
            canvas = canvases.nth(index)
            assert canvas.get_attribute("aria-label")
            page.wait_for_function(DRAWN, arg=canvas.element_handle())
        page.screenshot(path=str(shots / f"{report.slug}.png"), full_page=True)
    # Chromium asks for /favicon.ico by itself; the portal has none.
    assert [error for error in errors if not error.endswith("/favicon.ico")] == []

    # The filters change the figures (one live-server test: the suite's transactional tests in a row lose
    # the data migrations' groups).
    page.goto(f"{live_server.url}/reports/pipeline/")
    everyone = [row.split("\t")[:3] for row in page.locator("#table-managers tbody tr").all_inner_texts()]
    page.select_option("#id_manager", label="Bob Stone")
    page.click("form[aria-label=Filters] button[type=submit]")
    page.wait_for_url("**manager=*")
    only_bob = [row.split("\t")[:3] for row in page.locator("#table-managers tbody tr").all_inner_texts()]

    assert len(everyone) == 2 and only_bob == [row for row in everyone if row[0] == "Bob Stone"]
    assert page.locator("#table-stages tbody tr").all_inner_texts() == [
        "DM qualification\t1\t700\t46.7",
        "Legal review\t1\t800\t53.3",
    ]
    page.screenshot(path=str(shots / "pipeline-bob.png"), full_page=True)

    # The forecast's figures follow the manager filter too.
    page.goto(f"{live_server.url}/reports/forecast/")
    everyone = page.locator("#table-periods tbody tr").all_inner_texts()
    page.select_option("#id_manager", label="Bob Stone")
    page.click("form[aria-label=Filters] button[type=submit]")
    page.wait_for_url("**manager=*")
    page.wait_for_function(DRAWN, arg=page.locator("canvas.report-chart").first.element_handle())
    only_bob = page.locator("#table-periods tbody tr").all_inner_texts()
    assert len(everyone) == 2 and len(only_bob) == 2 and only_bob != everyone
    page.screenshot(path=str(shots / "forecast-bob.png"), full_page=True)
