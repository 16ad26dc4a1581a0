"""The sync against the Kommo sandbox over real HTTP: full and incremental runs, resuming, the events
reconciliation, and the API call budget."""

import urllib.parse

import pytest

from apps.flows.sync import mirror_follow, touches_follow
from apps.kommo.models import (
    Catalog,
    CatalogElement,
    Company,
    Contact,
    CustomField,
    KommoUser,
    Lead,
    LeadCatalogElement,
    LeadContact,
    Pipeline,
    StageChange,
    Status,
    SyncState,
)
from apps.kommo.services.mirror import BatchResult
from apps.kommo.services.sync import events_reconcile, mirror_sync
from tests.kommo.sandbox_support import (
    account_for,
    api_requests,
    minimum_full_sync_calls,
    sandbox_admin,
    sandbox_api,
    sandbox_start,
)

pytestmark = [pytest.mark.django_db, pytest.mark.sandbox]


def store_account(server):
    return server.store.account(server.store.default_account_id)


def test_a_full_sync_mirrors_everything_the_sandbox_holds(fresh_demo):
    account = account_for(fresh_demo)
    kommo = store_account(fresh_demo)

    results = mirror_sync(account=account, follow=mirror_follow)

    live_leads = [lead for lead in kommo.leads.values() if not lead.is_deleted]
    assert Lead.objects.filter(account=account, is_deleted=False).count() == len(live_leads)
    assert Contact.objects.count() == len([c for c in kommo.contacts.values() if not c.is_deleted])
    assert Company.objects.count() == len([c for c in kommo.companies.values() if not c.is_deleted])
    assert Pipeline.objects.count() == len(kommo.pipelines)
    assert Status.objects.count() == sum(len(p.statuses) for p in kommo.pipelines.values())
    assert KommoUser.objects.count() == len(kommo.users)
    assert CustomField.objects.count() == len(kommo.fields)
    assert Catalog.objects.count() == len(kommo.catalogs)
    assert CatalogElement.objects.count() == len(kommo.elements)
    contact_links = sum(len(kommo.links.ids(("leads", lead.id), "contacts")) for lead in live_leads)
    element_links = sum(len(kommo.links.ids(("leads", lead.id), "catalog_elements")) for lead in live_leads)
    assert LeadContact.objects.count() == contact_links and contact_links > len(live_leads)
    assert LeadCatalogElement.objects.count() == element_links
    assert not LeadContact.objects.filter(contact__isnull=True).exists()
    assert not Lead.objects.filter(status__isnull=True).exists()
    assert results["leads"].created == len(live_leads)


def test_a_second_run_changes_nothing(fresh_demo):
    account = account_for(fresh_demo)
    mirror_sync(account=account, follow=mirror_follow)

    again = mirror_sync(account=account, follow=mirror_follow)

    assert {name: result.changed for name, result in again.items()} == dict.fromkeys(again, False)
    assert not StageChange.objects.exists()


def test_an_incremental_run_picks_up_a_change_and_records_the_stage_move(fresh_demo):
    account = account_for(fresh_demo)
    mirror_sync(account=account, follow=mirror_follow)
    deal = Lead.objects.filter(account=account, status__is_won=False, status__is_lost=False).first()
    target = Status.objects.filter(pipeline=deal.pipeline, is_won=True).get()
    sandbox_api(fresh_demo, "PATCH", "/api/v4/leads", [{"id": deal.kommo_id, "status_id": target.kommo_id}])

    results = mirror_sync(account=account, resources=["leads"], follow=mirror_follow)

    assert results["leads"].updated == 1
    deal.refresh_from_db()
    assert deal.status == target
    [change] = results["leads"].new_stage_changes
    assert change.lead == deal and change.source == StageChange.Source.SYNC


class _StopAfter:
    """A progress reporter that interrupts the run after ``pages`` pages of one resource."""

    def __init__(self, resource, pages):
        self.resource, self.pages = resource, pages

    def start(self, resource, total):
        pass

    def advance(self, resource, count):
        if resource == self.resource and count:
            self.pages -= 1
            if self.pages == 0:
                raise KeyboardInterrupt

    def finish(self, resource, result):
        pass


def _lead_pages(requests_):
    pages = []
    for entry in requests_:
        if entry["path"].rstrip("/") == "/api/v4/leads":
            query = urllib.parse.parse_qs(entry["query"])
            pages.append(int(query.get("page", ["1"])[0]))
    return pages


def test_an_interrupted_full_sync_resumes_where_it_stopped():
    server = sandbox_start("large:1100")
    try:
        account = account_for(server)
        with pytest.raises(KeyboardInterrupt):
            mirror_sync(
                account=account, resources=["leads"], progress=_StopAfter("leads", 2), follow=mirror_follow
            )
        assert Lead.objects.count() == 500
        assert SyncState.objects.get(resource="leads").cursor["full"]["page"] == 2
        mark = server.app.request_log.last_seq

        result = mirror_sync(account=account, resources=["leads"], follow=mirror_follow)["leads"]

        assert _lead_pages(api_requests(server, mark)) == [2, 3, 4, 5]
        assert result.created == 600 and result.updated == 0
        assert Lead.objects.count() == 1100
        state = SyncState.objects.get(resource="leads")
        assert "full" not in state.cursor and state.seen == 1100 and state.last_full_at is not None
    finally:
        server.stop()


def test_the_events_reconciliation_repairs_a_deal_whose_status_webhook_was_dropped(fresh_demo):
    account = account_for(fresh_demo)
    mirror_sync(account=account, follow=mirror_follow)
    events_reconcile(account=account, follow=mirror_follow, touches_follow=touches_follow)
    sandbox_admin(fresh_demo, "PUT", "/_sandbox/faults", {"webhook_drop_rate": 1.0})
    kommo = store_account(fresh_demo)
    manager = next(user for user in kommo.users.values() if not user.is_admin)
    token = sandbox_admin(fresh_demo, "POST", "/_sandbox/tokens", {"user_id": manager.id})["access_token"]
    deal = Lead.objects.filter(account=account, status__is_won=False, status__is_lost=False).first()
    before = deal.status
    target = Status.objects.filter(pipeline=deal.pipeline, sort__gt=before.sort, is_won=False).first()
    try:
        sandbox_api(
            fresh_demo, "PATCH", "/api/v4/leads", [{"id": deal.kommo_id, "status_id": target.kommo_id}], token
        )

        result = events_reconcile(account=account, follow=mirror_follow, touches_follow=touches_follow)
    finally:
        sandbox_admin(fresh_demo, "PUT", "/_sandbox/faults", {"webhook_drop_rate": 0.0})

    deal.refresh_from_db()
    assert deal.status == target
    [change] = result.new_stage_changes
    assert (change.from_status_kommo_id, change.to_status_kommo_id) == (before.kommo_id, target.kommo_id)
    assert change.source == StageChange.Source.EVENTS and change.at_is_exact
    assert change.moved_by_kommo_user_id == manager.id and change.moved_by.kommo_id == manager.id
    assert change.kommo_event_id
    assert (
        events_reconcile(
            account=account, follow=mirror_follow, touches_follow=touches_follow
        ).new_stage_changes
        == []
    )
    assert StageChange.objects.filter(lead=deal).count() == 1


def test_an_events_page_naming_moved_and_other_deals_costs_one_refetch(fresh_demo):
    account = account_for(fresh_demo)
    mirror_sync(account=account, follow=mirror_follow)
    events_reconcile(account=account, follow=mirror_follow, touches_follow=touches_follow)
    moved, deleted = Lead.objects.filter(account=account, status__is_won=False, status__is_lost=False)[:2]
    target = Status.objects.filter(pipeline=moved.pipeline, sort__gt=moved.status.sort, is_won=False).first()
    sandbox_admin(fresh_demo, "PUT", "/_sandbox/faults", {"webhook_drop_rate": 1.0})
    try:
        sandbox_api(
            fresh_demo, "PATCH", "/api/v4/leads", [{"id": moved.kommo_id, "status_id": target.kommo_id}]
        )
        sandbox_admin(fresh_demo, "POST", f"/_sandbox/leads/{deleted.kommo_id}/delete", {})
        mark = fresh_demo.app.request_log.last_seq

        result = events_reconcile(account=account, follow=mirror_follow, touches_follow=touches_follow)
    finally:
        sandbox_admin(fresh_demo, "PUT", "/_sandbox/faults", {"webhook_drop_rate": 0.0})

    refetches = [
        entry for entry in api_requests(fresh_demo, mark) if entry["path"].rstrip("/") == "/api/v4/leads"
    ]
    assert len(refetches) == 1
    assert urllib.parse.unquote(refetches[0]["query"]).count("filter[id][]=") == 2
    [change] = result.new_stage_changes  # the exact move, from the event; none inferred beside it
    assert (change.lead_id, change.to_status_kommo_id, change.source) == (moved.pk, target.kommo_id, "events")
    deleted.refresh_from_db()
    assert deleted.is_deleted


def test_the_events_reconciliation_records_a_new_deal_entering_its_first_stage(fresh_demo):
    account = account_for(fresh_demo)
    mirror_sync(account=account, follow=mirror_follow)
    events_reconcile(account=account, follow=mirror_follow, touches_follow=touches_follow)
    stage = Status.objects.filter(account=account, is_won=False, is_lost=False).order_by("pk").first()
    sandbox_admin(fresh_demo, "PUT", "/_sandbox/faults", {"webhook_drop_rate": 1.0})
    try:
        [created] = sandbox_api(
            fresh_demo,
            "POST",
            "/api/v4/leads",
            [
                {
                    "name": "Made while webhooks were lost",
                    "status_id": stage.kommo_id,
                    "pipeline_id": stage.pipeline.kommo_id,
                }
            ],
        )["_embedded"]["leads"]

        result = events_reconcile(account=account, follow=mirror_follow, touches_follow=touches_follow)
    finally:
        sandbox_admin(fresh_demo, "PUT", "/_sandbox/faults", {"webhook_drop_rate": 0.0})

    deal = Lead.objects.get(account=account, kommo_id=created["id"])
    [change] = result.new_stage_changes
    assert change.lead == deal and deal.status == stage
    assert (change.from_status_kommo_id, change.to_status_kommo_id) == (None, stage.kommo_id)
    assert change.source == StageChange.Source.EVENTS and change.kommo_event_id


def test_the_events_reconciliation_applies_deletions_and_restores(fresh_demo):
    account = account_for(fresh_demo)
    mirror_sync(account=account, follow=mirror_follow)
    events_reconcile(account=account, follow=mirror_follow, touches_follow=touches_follow)
    deal = Lead.objects.filter(account=account).first()

    sandbox_admin(fresh_demo, "POST", f"/_sandbox/leads/{deal.kommo_id}/delete", {})
    events_reconcile(account=account, follow=mirror_follow, touches_follow=touches_follow)
    deal.refresh_from_db()
    assert deal.is_deleted

    sandbox_admin(fresh_demo, "POST", f"/_sandbox/leads/{deal.kommo_id}/restore", {})
    events_reconcile(account=account, follow=mirror_follow, touches_follow=touches_follow)
    deal.refresh_from_db()
    assert not deal.is_deleted


def test_a_full_sync_stays_within_the_call_budget():
    server = sandbox_start("large:1300")
    try:
        account = account_for(server)
        mark = server.app.request_log.last_seq

        results = mirror_sync(account=account, full=True, follow=mirror_follow)

        calls = api_requests(server, mark)
        minimum = minimum_full_sync_calls(server)
        assert len(calls) <= 1.05 * minimum, (len(calls), minimum)
        assert not [c for c in calls if c["path"].startswith("/api/v4/leads/") and c["path"][14:].isdigit()]
        assert _lead_pages(calls) == [1, 2, 3, 4, 5, 6]
        assert isinstance(results["leads"], BatchResult) and results["leads"].created == 1300
    finally:
        server.stop()
