import pytest
from django.urls import reverse

from apps.kommo import types
from apps.kommo.models import Company, Contact, Lead
from apps.kommo.services.mirror import lead_upsert_from_kommo
from apps.kommo.services.sync import mirror_sync
from tests.kommo.mirror_support import account_create, lead
from tests.kommo.sandbox_support import account_for, sandbox_api, sandbox_start

pytestmark = pytest.mark.django_db

PAGES = ["pipeline", "status", "kommouser", "customfield", "catalog", "catalogelement", "company", "contact"]


@pytest.mark.parametrize("model", [*PAGES, "lead", "stagechange", "syncstate"])
def test_every_mirror_list_opens_and_offers_no_add(admin_client, model):
    lead_upsert_from_kommo(account=account_create(), data=lead())

    response = admin_client.get(reverse(f"admin:kommo_{model}_changelist"), {"q": "Example"})

    assert response.status_code == 200
    assert reverse(f"admin:kommo_{model}_add") not in response.content.decode()


def test_a_deal_page_is_read_only_and_shows_the_payload_pretty(admin_client):
    deal = lead_upsert_from_kommo(account=account_create(), data=lead()).obj

    response = admin_client.get(reverse("admin:kommo_lead_change", args=[deal.pk]))

    body = response.content.decode()
    assert response.status_code == 200 and "<pre>" in body and "&quot;loss_reason_id&quot;: 4203748" in body
    assert admin_client.post(reverse("admin:kommo_lead_delete", args=[deal.pk])).status_code == 403


@pytest.mark.sandbox
def test_resync_fetches_the_selected_deals_again(admin_client):
    server = sandbox_start("demo")
    try:
        account = account_for(server)
        mirror_sync(account=account, resources=["pipelines", "users", "leads"])
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
        mirror_sync(account=account, resources=["users", "companies", "contacts"])
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

    contact_upsert_from_kommo(account=account_create(), data=types.Contact.from_api(data))

    response = admin_client.get(reverse("admin:kommo_contact_changelist"), {"q": "+19651796212"})

    assert "Sam" in response.content.decode()
