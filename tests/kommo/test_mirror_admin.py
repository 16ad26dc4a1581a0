import re
from unittest import mock

import pytest
from django.urls import reverse

from apps.flows.sync import mirror_follow
from apps.kommo import types
from apps.kommo.models import Company, Contact, Lead, Status
from apps.kommo.provenance import MirrorSource, Provenance
from apps.kommo.services.mirror import lead_upsert_from_kommo
from apps.kommo.services.sync import mirror_sync
from tests.factories import KommoUserFactory
from tests.kommo.mirror_support import account_create, lead
from tests.kommo.sandbox_support import account_for, sandbox_api, sandbox_start

pytestmark = pytest.mark.django_db

PAGES = ["pipeline", "status", "kommouser", "customfield", "catalog", "catalogelement", "company", "contact"]


@pytest.mark.parametrize("model", [*PAGES, "lead", "stagechange", "syncstate"])
def test_every_mirror_list_opens_and_offers_no_add(admin_client, model):
    lead_upsert_from_kommo(account=account_create(), data=lead(), follow=mirror_follow)

    response = admin_client.get(reverse(f"admin:kommo_{model}_changelist"), {"q": "Example"})

    assert response.status_code == 200
    assert reverse(f"admin:kommo_{model}_add") not in response.content.decode()


def test_a_deal_page_is_read_only_and_shows_the_payload_pretty(admin_client):
    deal = lead_upsert_from_kommo(account=account_create(), data=lead(), follow=mirror_follow).obj

    response = admin_client.get(reverse("admin:kommo_lead_change", args=[deal.pk]))

    body = response.content.decode()
    assert response.status_code == 200 and "<pre" in body and "&quot;loss_reason_id&quot;: 4203748" in body
    assert admin_client.post(reverse("admin:kommo_lead_delete", args=[deal.pk])).status_code == 403


def test_the_deal_page_and_list_show_the_price_with_the_thousands_separator(admin_client):
    deal = lead_upsert_from_kommo(account=account_create(), data=lead(), follow=mirror_follow).obj
    Lead.objects.filter(pk=deal.pk).update(price=1_234_567)

    page = admin_client.get(reverse("admin:kommo_lead_change", args=[deal.pk])).content.decode()
    listed = admin_client.get(reverse("admin:kommo_lead_changelist")).content.decode()

    assert "1,234,567" in page and "1234567" not in page.split("<pre", 1)[0]  # the payload aside
    assert re.search(r'<td class="field-value[^>]*data-label="price">1,234,567</td>', listed)


@pytest.mark.sandbox
def test_resync_fetches_the_selected_deals_again(admin_client):
    server = sandbox_start("demo")
    try:
        account = account_for(server)
        mirror_sync(account=account, resources=["pipelines", "users", "leads"], follow=mirror_follow)
        deal = Lead.objects.filter(account=account).first()
        sandbox_api(server, "PATCH", "/api/v4/leads", [{"id": deal.kommo_id, "name": "Renamed in Kommo"}])

        response = admin_client.post(
            reverse("admin:kommo_lead_changelist"),
            {"action": "action", "_selected_action": [deal.pk]},
            follow=True,
        )

        deal.refresh_from_db()
        assert deal.name == "Renamed in Kommo"
        assert "1 updated" in response.content.decode()
    finally:
        server.stop()


@pytest.mark.sandbox
@pytest.mark.parametrize(
    ("model", "resource", "admin_name"), [(Contact, "contacts", "contact"), (Company, "companies", "company")]
)
def test_resync_fetches_the_selected_contacts_and_companies_again(admin_client, model, resource, admin_name):
    server = sandbox_start("demo")
    try:
        account = account_for(server)
        mirror_sync(account=account, resources=["users", "companies", "contacts"], follow=mirror_follow)
        rows = list(model.objects.filter(account=account).order_by("kommo_id")[:2])
        assert len(rows) == 2
        sandbox_api(
            server, "PATCH", f"/api/v4/{resource}", [{"id": rows[0].kommo_id, "name": "Renamed in Kommo"}]
        )

        response = admin_client.post(
            reverse(f"admin:kommo_{admin_name}_changelist"),
            {"action": "action", "_selected_action": [row.pk for row in rows]},
            follow=True,
        )

        renamed, untouched = (model.objects.get(pk=row.pk) for row in rows)
        assert renamed.name == "Renamed in Kommo" and untouched.name == rows[1].name
        assert "1 updated, 1 unchanged, 0 stale of 2 selected" in response.content.decode()
    finally:
        server.stop()


def test_a_contact_is_found_by_its_phone_in_any_writing(admin_client):
    from tests.kommo.payloads import payload

    data = payload("contacts-list.json")["_embedded"]["contacts"][0]
    data["custom_fields_values"][0]["values"] = [{"value": "+1 965 179 6212"}]
    from apps.kommo.services.mirror import contact_upsert_from_kommo

    contact_upsert_from_kommo(
        account=account_create(), data=types.Contact.from_api(data), follow=mirror_follow
    )

    response = admin_client.get(reverse("admin:kommo_contact_changelist"), {"q": "+19651796212"})

    assert "Sam" in response.content.decode()


def _pipelines_upsert(account, copies: range) -> None:
    """The recorded pipeline (copy 0) and further copies of it, each with its own id and stages."""
    import copy

    from apps.kommo.services.mirror import pipelines_upsert_from_kommo
    from tests.kommo.payloads import payload

    recorded = payload("pipelines.json")["_embedded"]["pipelines"][0]
    pipelines = []
    for index in copies:
        data = copy.deepcopy(recorded)
        data["id"] += index
        for status in data["_embedded"]["statuses"]:
            status["pipeline_id"] = data["id"]
            if status["id"] not in (142, 143):
                status["id"] += 1000 * index
        pipelines.append(types.Pipeline.from_api(data))
    pipelines_upsert_from_kommo(account=account, pipelines=pipelines)


def _moves_record(account, deal: Lead, moves: range) -> None:
    """Moves of the deal back and forth between two stages of the recorded pipeline, a day apart."""
    import datetime as dt

    from apps.kommo.services.mirror import stage_change_record

    stages = (32392159, 32392165)
    for index in moves:
        stage_change_record(
            account=account,
            lead=deal,
            from_status_id=stages[index % 2],
            to_status_id=stages[(index + 1) % 2],
            at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=index),
            source="webhook",
            follow=mirror_follow,
        )


def _queries(admin_client, url: str) -> tuple[int, str]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(url)
    assert response.status_code == 200
    return len(captured.captured_queries), response.content.decode()


@pytest.mark.parametrize("page", ["admin:kommo_stagechange_changelist", "admin:kommo_lead_change"])
def test_the_stage_history_costs_no_query_per_move(admin_client, page):
    account = account_create()
    _pipelines_upsert(account, range(1))
    deal = lead_upsert_from_kommo(
        account=account, data=lead(pipeline_id=3177727, status_id=32392159), follow=mirror_follow
    ).obj
    url = reverse(page, args=[deal.pk] if page.endswith("_change") else [])
    _moves_record(account, deal, range(2))
    few, _ = _queries(admin_client, url)

    _moves_record(account, deal, range(2, 12))
    many, body = _queries(admin_client, url)

    assert many == few and body.count("Воронка / Принимают решение") >= 6


def test_the_deals_stage_filter_costs_no_query_per_stage(admin_client):
    account = account_create()
    _pipelines_upsert(account, range(1))
    lead_upsert_from_kommo(
        account=account, data=lead(pipeline_id=3177727, status_id=32392159), follow=mirror_follow
    )
    url = reverse("admin:kommo_lead_changelist")
    few, _ = _queries(admin_client, url)

    _pipelines_upsert(account, range(4))
    many, body = _queries(admin_client, url)

    assert many == few and body.count("Воронка / Первичный контакт") >= 4


@pytest.mark.parametrize("page", ["admin:kommo_stagechange_changelist", "admin:kommo_lead_change"])
def test_the_portals_own_move_back_is_shown_as_made_by_the_portal_not_by_its_token_user(admin_client, page):
    import datetime as dt
    import functools

    from apps.kommo.models import StageChange
    from apps.kommo.services.mirror import stage_change_record

    account = account_create()
    _pipelines_upsert(account, range(1))
    deal = lead_upsert_from_kommo(
        account=account, data=lead(pipeline_id=3177727, status_id=32392159), follow=mirror_follow
    ).obj
    KommoUserFactory(account=account, kommo_id=777, name="Token Owner")
    move = functools.partial(
        stage_change_record,
        account=account,
        lead=deal,
        from_status_id=32392165,
        to_status_id=32392159,
        at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        follow=mirror_follow,
    )
    back, _ = move(source="gate")
    move(source="webhook", moved_by_kommo_user_id=777)  # the webhook of the same move names the token's user
    assert StageChange.objects.get(pk=back.pk).moved_by.name == "Token Owner"

    body = admin_client.get(
        reverse(page, args=[deal.pk] if page.endswith("_change") else [])
    ).content.decode()

    assert "The portal (gate)" in body and "Token Owner" not in body


@pytest.mark.sandbox
def test_a_resync_is_followed_as_the_sync_is_the_deal_derived_and_its_move_queued_for_the_gates(admin_client):
    server = sandbox_start("demo")
    try:
        account = account_for(server)
        mirror_sync(account=account, resources=["pipelines", "users", "leads"], follow=mirror_follow)
        deal = Lead.objects.filter(account=account, closed_at__isnull=True).order_by("kommo_id").first()
        target = Status.objects.filter(pipeline=deal.pipeline, is_won=True).get()
        sandbox_api(server, "PATCH", "/api/v4/leads", [{"id": deal.kommo_id, "status_id": target.kommo_id}])

        with (
            mock.patch("apps.stakeholders.services.stakeholders_derive_for_mirror_changes") as derive,
            mock.patch("apps.flows.sync.gates_queue_move") as queued,
        ):
            admin_client.post(
                reverse("admin:kommo_lead_changelist"), {"action": "action", "_selected_action": [deal.pk]}
            )

        derive.assert_called_once_with(
            account=account,
            lead_ids=[deal.pk],
            contact_ids=[],
            catalog_element_ids=[],
            provenance=Provenance(MirrorSource.SYNC),
        )
        (call,) = queued.call_args_list
        assert (call.kwargs["stage_change"].lead_id, call.kwargs["stage_change"].to_status_kommo_id) == (
            deal.pk,
            target.kommo_id,
        )
    finally:
        server.stop()
