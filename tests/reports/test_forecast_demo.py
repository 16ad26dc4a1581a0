"""The forecast on the demo seed: after bootstrap, the first sync and its year of history, the stakeholders'
past is dated from Kommo's events, the backtest fills the accuracy table (every method at weeks 1, 4 and 8
of the past quarters) and the committee adjustment and the coverage trend differ from the plain figures.
On the way, the events sweep sees a note and a completed meeting whose webhooks never came (the sandbox
sends none here) as touches."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.flows.sync import field_changes_follow, mirror_follow, touches_follow
from apps.kommo.models.mirror import LeadContact
from apps.kommo.services.sync import events_reconcile, history_backfill, mirror_sync
from apps.reports.coverage_snapshots import coverage_snapshots_backfill
from apps.reports.forecast_snapshots import forecast_backtest
from apps.reports.framework import scope_for
from apps.reports.models import CoverageSnapshot, ForecastSnapshot
from apps.reports.selectors.forecast import LEAD_WEEKS, METHODS, forecast_accuracy, forecast_history
from apps.stakeholders.bootstrap import account_bootstrap
from apps.stakeholders.models import Stakeholder, StakeholderEvent
from tests.kommo.sandbox_support import account_for, sandbox_api, sandbox_start
from tests.reports.support import person

pytestmark = [pytest.mark.django_db, pytest.mark.sandbox]


def test_the_demo_s_year_dates_the_committee_and_the_backtest_fills_the_accuracy_table() -> None:
    server = sandbox_start("demo")
    try:
        account = account_for(server)
        account_bootstrap(account=account, public_url="http://127.0.0.1:9")
        mirror_sync(account=account, follow=mirror_follow)
        history = history_backfill(account=account, days=365, field_changes_follow=field_changes_follow)
        events_reconcile(account=account, follow=mirror_follow, touches_follow=touches_follow)
        touched = _note_and_meeting(server, account)
        events_reconcile(account=account, follow=mirror_follow, touches_follow=touches_follow)
    finally:
        server.stop()

    for stakeholder in touched:
        stakeholder.refresh_from_db()
        assert (
            stakeholder.activity_at is not None
            and stakeholder.activity_at > timezone.now() - dt.timedelta(hours=1)
        ), stakeholder
        assert stakeholder.last_touch == stakeholder.activity_at

    # The stakeholders' past came from the elements' field changes: roles, approvals, objections.
    assert history.field_changes > 0
    past = StakeholderEvent.objects.filter(account=account).exclude(kommo_event_id="")
    fields = set(past.values_list("field", flat=True))
    assert {"role", "approval_status", "approval_decided_at", "objection_weight"} <= fields
    assert past.filter(at__lt=timezone.now() - dt.timedelta(days=180)).exists()

    written = forecast_backtest(account=account, weeks=52)

    assert len({week for week, _, _ in written}) == 52
    assert ForecastSnapshot.objects.filter(account=account, backtested=True).count() == len(written)
    scope, _ = scope_for(person("head", "Head of sales"), {"period": "this_quarter"}, now=timezone.now())
    quarters = forecast_history(scope=scope)
    rows = forecast_accuracy(history=quarters)
    assert len(quarters) >= 3 and all(quarter.actual > 0 for quarter in quarters)
    assert {(row.method, row.week) for row in rows} == {(m, w) for m in METHODS for w in LEAD_WEEKS}
    for row in rows:
        assert row.periods >= 3 and row.zero_periods == 0
        assert row.error is not None and row.accuracy is not None and row.wape is not None
    weighted = {row.week: row for row in rows if row.method == "weighted"}
    # A forecast from the account's own history is in the right range: off by less than the whole.
    assert weighted[1].wape < 1.0, weighted
    # The committee's state when the cohort's deals left their stages sets p' apart from p.
    snapshots = ForecastSnapshot.objects.filter(account=account)
    assert any(s.current_committee != s.current_weighted for s in snapshots)
    factors = {state["factor"] for s in snapshots for stage in s.stages for state in stage["states"]}
    assert factors - {1.0}, factors

    coverage_snapshots_backfill(account=account, weeks=26)
    shares = {}
    for week, deals, without in CoverageSnapshot.objects.filter(account=account).values_list(
        "week", "deals", "without_dm"
    ):
        total = shares.setdefault(week, [0, 0])
        total[0] += deals
        total[1] += without
    assert len({round(without / deals, 2) for deals, without in shares.values() if deals}) > 3, shares


def _note_and_meeting(server, account) -> list[Stakeholder]:
    """A note on one stakeholder's contact, and a meeting completed on another deal (a touch of its main
    contact), made in the sandbox as a Kommo user would: the people they touch."""
    person = Stakeholder.objects.filter(account=account, contact__isnull=False).order_by("pk").first()
    sandbox_api(
        server,
        "POST",
        "/api/v4/contacts/notes",
        [{"entity_id": person.contact.kommo_id, "note_type": "common", "params": {"text": "Called back"}}],
    )
    link = (
        LeadContact.objects.filter(lead__account=account, is_main=True)
        .exclude(lead_id=person.lead_id)
        .exclude(contact_id=person.contact_id)
        .select_related("lead")
        .order_by("pk")
        .first()
    )
    main = Stakeholder.objects.get(lead_id=link.lead_id, contact_id=link.contact_id)
    created = sandbox_api(
        server,
        "POST",
        "/api/v4/tasks",
        [
            {
                "text": "Demo meeting",
                "complete_till": int(timezone.now().timestamp()) + 3600,
                "task_type_id": 2,
                "entity_id": link.lead.kommo_id,
                "entity_type": "leads",
            }
        ],
    )
    task_id = created["_embedded"]["tasks"][0]["id"]
    sandbox_api(
        server, "PATCH", "/api/v4/tasks", [{"id": task_id, "is_completed": True, "result": {"text": "Met"}}]
    )
    return [person, main]
