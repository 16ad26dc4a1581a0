"""The decision-maker coverage, stuck-deals and gates pages in real Chromium: each renders, its charts draw
(canvases with painted pixels), the console stays clean, and a filter changes the figures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.utils import timezone

import tests.reports.desk as desk_module
from apps.gates.models import GateDecision
from apps.reports.coverage_snapshots import coverage_snapshot_take
from apps.reports.export.stuck import stuck_states_refresh
from tests.reports.desk import days_ago, make_desk
from tests.reports.support import person
from tests.stakeholders.conftest import chromium
from tests.support.browser import sign_in

__all__ = ["chromium"]
pytestmark = [pytest.mark.browser, pytest.mark.postgres]
Outcome = GateDecision.Outcome

PAINTED = """(canvas) => {
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) painted++;
  return painted;
}"""


@pytest.fixture
def history(transactional_db, monkeypatch):
    now = timezone.now()
    monkeypatch.setattr(desk_module, "NOW", now)
    desk = make_desk()
    desk.completed_stays("Technical validation", [12.0] * 20)
    big = desk.deal("Northwind", price=80_000, entered_days_ago=42)
    desk.stakeholder(big, "technical_evangelist", name="Tom", objection="0.7", touched_days_ago=2)
    calm = desk.deal("Calm", price=5_000)
    desk.stakeholder(calm, "decision_maker", approval="approved")
    quiet = desk.deal("Quiet", price=20_000, manager="maria", open_task=False, stage="Legal review")
    desk.stakeholder(quiet, "decision_maker", approval="pending", touched_days_ago=30)
    rule = desk.rule("Legal review", name="Lawyer approved")
    desk.decision(rule, big, Outcome.BLOCKED, days_ago(3), ["the Lawyer has not approved (Lee: pending)"])
    desk.decision(rule, big, Outcome.ALLOWED, days_ago(1))
    desk.decision(rule, quiet, Outcome.BLOCKED, days_ago(2), ["no Lawyer is identified on the deal"])
    coverage_snapshot_take(account=desk.account, now=now)
    stuck_states_refresh(account=desk.account, now=now)  # as the beat task does
    person("head", "Head of sales")  # password "pw"
    return desk


def shots() -> Path | None:
    """Where to keep screenshots to look at (``REPORTS_SCREENSHOTS``); named apart from test_browser's
    pages of the same slugs, which would otherwise be overwritten."""
    folder = os.environ.get("REPORTS_SCREENSHOTS")
    return Path(folder) if folder else None


@pytest.mark.parametrize(
    ("slug", "table", "column"),
    [("coverage", "stages", 1), ("stuck", "deals", 0), ("gates", "managers", 1)],
)
def test_the_page_renders_draws_its_charts_and_its_filters_change_the_figures(
    history, live_server, chromium, slug, table, column
) -> None:
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []

    def console(message) -> None:  # type: ignore[no-untyped-def]
        where = str(message.location.get("url"))
        # The browser's own request for /favicon.ico (the portal serves none) is not the page's doing.
        if message.type == "error" and not where.endswith("/favicon.ico"):
            problems.append(f"{message.text} {where}")

    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    sign_in(page, f"{live_server.url}/reports/{slug}/", "head", "pw")

    canvases = page.locator("canvas.report-chart")
    assert canvases.count() >= 1
    for index in range(canvases.count()):
        assert canvases.nth(index).get_attribute("aria-label")
        assert canvases.nth(index).evaluate(PAINTED) > 0, f"chart {index} of {slug} drew nothing"
    before = page.locator(f"#table-{table} tbody tr").all_inner_texts()
    if shots():
        page.screenshot(path=str(shots() / f"{slug}-filtered-desk.png"), full_page=True)

    page.select_option("#id_manager", label="Maria Lopez")
    page.click("form[aria-label=Filters] button[type=submit]")
    page.wait_for_load_state()
    after = page.locator(f"#table-{table} tbody tr").all_inner_texts()

    assert before and after and before != after
    assert problems == []
