"""Leads over HTTP: HAL pages, 204s, limits, filters, ``with=``, writes and their validation errors."""

from __future__ import annotations

import pytest

from kommo_sandbox.server import SandboxServer
from tests.kommo_sandbox.conftest import Client, sample

pytestmark = pytest.mark.sandbox


def all_pages(api: Client, path: str) -> list[dict]:
    items, url = [], path
    while url:
        response = api.get(url)
        if response.status_code == 204:
            break
        data = response.json()
        items.extend(data["_embedded"]["leads"])
        url = data["_links"].get("next", {}).get("href")
    return items


def stage_ids(sandbox: SandboxServer) -> dict[str, int]:
    account = sandbox.store.account(sandbox.credentials["account_id"])
    return {s.name: s.id for s in account.main_pipeline.statuses}


def test_it_pages_leads_with_next_links_until_there_are_no_more(api):
    first = api.get("/api/v4/leads?limit=10")
    assert first.status_code == 200
    assert first.headers["Content-Type"] == "application/hal+json"
    assert first.headers["X-Request-Id"]
    data = first.json()
    assert data["_page"] == 1
    assert data["_links"]["self"]["href"].endswith("/api/v4/leads?page=1&limit=10")
    assert "next" in data["_links"]
    leads = all_pages(api, "/api/v4/leads?limit=10")
    assert len(leads) == len({lead["id"] for lead in leads}) >= 45


def test_a_page_past_the_end_is_204_with_an_empty_body(api):
    response = api.get("/api/v4/leads?limit=250&page=50")
    assert response.status_code == 204
    assert response.content == b""


def test_the_last_page_has_no_next_link(api):
    total = len(all_pages(api, "/api/v4/leads?limit=250"))  # the demo's 345 deals: two pages
    last = -(-total // 250)
    data = api.get(f"/api/v4/leads?limit=250&page={last}").json()
    assert len(data["_embedded"]["leads"]) == total - 250 * (last - 1)
    assert "next" not in data["_links"]


def test_a_list_limit_above_250_is_clamped(api):
    data = api.get("/api/v4/leads?limit=500").json()
    assert data["_links"]["self"]["href"].endswith("limit=250")


def test_the_list_matches_the_sample_shape(api):
    lead = api.get("/api/v4/leads?limit=1").json()["_embedded"]["leads"][0]
    expected = sample("leads-list-response.json")["_embedded"]["leads"][0]
    assert set(expected) <= set(lead)
    assert set(expected["_embedded"]) <= set(lead["_embedded"])
    assert set(expected["custom_fields_values"][0]) <= set(lead["custom_fields_values"][0])


def test_with_contacts_and_catalog_elements_embeds_them_like_the_sample(api):
    lead = api.get("/api/v4/leads?limit=1&with=contacts,catalog_elements,loss_reason").json()["_embedded"][
        "leads"
    ][0]
    expected = sample("lead-get-response.json")["_embedded"]
    assert set(expected["contacts"][0]) == set(lead["_embedded"]["contacts"][0])
    assert set(expected["catalog_elements"][0]) == set(lead["_embedded"]["catalog_elements"][0])
    assert set(expected["catalog_elements"][0]["metadata"]) == set(
        lead["_embedded"]["catalog_elements"][0]["metadata"]
    )
    assert sum(c["is_main"] for c in lead["_embedded"]["contacts"]) == 1
    plain = api.get(f"/api/v4/leads/{lead['id']}").json()
    assert "contacts" not in plain["_embedded"]


def test_filters_by_id_status_pipeline_responsible_and_updated_at(api, sandbox):
    leads = all_pages(api, "/api/v4/leads?limit=250")
    one, two = leads[0], leads[1]
    by_id = api.get(f"/api/v4/leads?filter[id][]={one['id']}&filter[id][]={two['id']}").json()["_embedded"][
        "leads"
    ]
    assert {lead["id"] for lead in by_id} == {one["id"], two["id"]}
    legal = stage_ids(sandbox)["Legal review"]
    pipeline = one["pipeline_id"]
    response = api.get(
        f"/api/v4/leads?filter[statuses][0][pipeline_id]={pipeline}&filter[statuses][0][status_id]={legal}"
    )
    in_legal = response.json()["_embedded"]["leads"]
    assert in_legal and all(lead["status_id"] == legal for lead in in_legal)
    assert len(in_legal) == sum(lead["status_id"] == legal for lead in leads)
    mine = api.get(
        f"/api/v4/leads?filter[responsible_user_id][]={one['responsible_user_id']}&limit=250"
    ).json()
    assert all(
        lead["responsible_user_id"] == one["responsible_user_id"] for lead in mine["_embedded"]["leads"]
    )
    assert api.get(f"/api/v4/leads?filter[pipeline_id][]={pipeline}&limit=250").json()["_embedded"]["leads"]
    assert api.get("/api/v4/leads?filter[pipeline_id][]=1").status_code == 204
    since = sorted(lead["updated_at"] for lead in leads)[-5]
    recent = api.get(f"/api/v4/leads?filter[updated_at][from]={since}&limit=250").json()["_embedded"]["leads"]
    assert {lead["id"] for lead in recent} == {lead["id"] for lead in leads if lead["updated_at"] >= since}


def test_order_by_created_at_descending(api):
    leads = api.get("/api/v4/leads?order[created_at]=desc&limit=250").json()["_embedded"]["leads"]
    stamps = [lead["created_at"] for lead in leads]
    assert stamps == sorted(stamps, reverse=True)


def test_create_echoes_request_ids_and_places_the_lead_in_the_first_stage(api, sandbox):
    response = api.post(
        "/api/v4/leads", [{"name": "Acme — pilot", "price": 12000}, {"name": "B", "request_id": "x"}]
    )
    assert response.status_code == 200
    entries = response.json()["_embedded"]["leads"]
    assert [e["request_id"] for e in entries] == ["0", "x"]
    assert set(sample("leads-post-response.json")["_embedded"]["leads"][0]) == set(entries[0])
    lead = api.get(f"/api/v4/leads/{entries[0]['id']}").json()
    assert lead["status_id"] == stage_ids(sandbox)["DM qualification"]
    assert lead["price"] == 12000 and lead["closed_at"] is None


def test_batch_update_needs_an_id_on_every_item_and_reports_each_failure(api):
    lead_id = api.post("/api/v4/leads", [{"name": "To update"}]).json()["_embedded"]["leads"][0]["id"]
    response = api.patch(
        "/api/v4/leads", [{"id": lead_id, "price": 5}, {"price": 10}, {"id": lead_id, "status_id": 1}]
    )
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json()
    assert set(body) == set(sample("error-validation.json"))
    failures = {item["request_id"]: item["errors"] for item in body["validation-errors"]}
    assert set(failures) == {"1", "2"}
    assert failures["2"][0] == {
        "code": "NotSupportedChoice",
        "path": "status_id",
        "detail": "The value you selected is not a valid choice.",
    }
    assert api.get(f"/api/v4/leads/{lead_id}").json()["price"] == 0  # nothing was written


def test_batch_update_answers_ids_and_updated_at(api):
    ids = [
        e["id"]
        for e in api.post("/api/v4/leads", [{"name": "a"}, {"name": "b"}]).json()["_embedded"]["leads"]
    ]
    response = api.patch("/api/v4/leads", [{"id": ids[0], "price": 100}, {"id": ids[1], "name": "b2"}])
    assert response.status_code == 200
    entries = response.json()["_embedded"]["leads"]
    assert set(sample("leads-patch-response.json")["_embedded"]["leads"][0]) <= set(entries[0])
    assert api.get(f"/api/v4/leads/{ids[1]}").json()["name"] == "b2"


def test_single_patch_takes_an_object_and_answers_flat(api, sandbox):
    lead_id = api.post("/api/v4/leads", [{"name": "single"}]).json()["_embedded"]["leads"][0]["id"]
    response = api.patch(f"/api/v4/leads/{lead_id}", {"status_id": 142})
    assert response.status_code == 200
    assert set(response.json()) == {"id", "updated_at", "_links"}
    lead = api.get(f"/api/v4/leads/{lead_id}").json()
    assert lead["status_id"] == 142 and lead["closed_at"] is not None
    assert api.patch(f"/api/v4/leads/{lead_id}", [{"name": "x"}]).status_code == 400


def test_unknown_custom_field_and_wrong_enum_are_validation_errors(api):
    response = api.post(
        "/api/v4/leads", [{"custom_fields_values": [{"field_id": 1, "values": [{"value": "x"}]}]}]
    )
    assert response.json()["validation-errors"][0]["errors"][0]["path"] == "custom_fields_values.0.field_id"
    fields = api.get("/api/v4/leads/custom_fields").json()["_embedded"]["custom_fields"]
    segment = next(f for f in fields if f["name"] == "Segment")
    response = api.post(
        "/api/v4/leads", [{"custom_fields_values": [{"field_id": segment["id"], "values": [{"enum_id": 1}]}]}]
    )
    error = response.json()["validation-errors"][0]["errors"][0]
    assert error["code"] == "NotSupportedChoice"
    assert error["path"] == "custom_fields_values.0.values.0.enum_id"


def test_more_than_250_items_is_422(api):
    response = api.post("/api/v4/leads", [{"name": str(i)} for i in range(251)])
    assert response.status_code == 422
    assert response.json() == sample("error-422-limit.json")


def test_an_empty_body_is_400(api):
    response = api.post("/api/v4/leads", [])
    assert response.status_code == 400
    assert response.json() == sample("error-400-empty-body.json")


def test_a_missing_lead_is_204_and_delete_is_405(api):
    assert api.get("/api/v4/leads/1").status_code == 204
    response = api.delete("/api/v4/leads/1")
    assert response.status_code == 405
    assert response.json() == sample("error-405.json")


def test_tags_and_linked_contacts_on_write(api):
    contact_id = api.post("/api/v4/contacts", [{"name": "Tag Person"}]).json()["_embedded"]["contacts"][0][
        "id"
    ]
    body = [
        {
            "name": "tagged",
            "_embedded": {"tags": [{"name": "pilot"}], "contacts": [{"id": contact_id, "is_main": True}]},
        }
    ]
    lead_id = api.post("/api/v4/leads", body).json()["_embedded"]["leads"][0]["id"]
    lead = api.get(f"/api/v4/leads/{lead_id}?with=contacts").json()
    assert [t["name"] for t in lead["_embedded"]["tags"]] == ["pilot"]
    assert lead["_embedded"]["contacts"][0]["id"] == contact_id
    assert lead["_embedded"]["contacts"][0]["is_main"] is True
    contact = api.get(f"/api/v4/contacts/{contact_id}?with=leads").json()
    assert [lead["id"] for lead in contact["_embedded"]["leads"]] == [lead_id]


def test_deleted_leads_show_only_with_only_deleted(api, admin):
    lead_id = api.post("/api/v4/leads", [{"name": "to delete"}]).json()["_embedded"]["leads"][0]["id"]
    assert admin.post(f"/_sandbox/leads/{lead_id}/delete", {}).status_code == 200
    assert api.get(f"/api/v4/leads/{lead_id}").status_code == 204
    deleted = api.get("/api/v4/leads?with=only_deleted").json()["_embedded"]["leads"]
    assert [{"id", "updated_at", "is_deleted", "_links"}] == [set(d) for d in deleted if d["id"] == lead_id]
    admin.post(f"/_sandbox/leads/{lead_id}/restore", {})
    assert api.get(f"/api/v4/leads/{lead_id}").status_code == 200
    types = [
        e["type"]
        for e in api.get(f"/api/v4/events?filter[entity_id]={lead_id}&filter[entity]=lead").json()[
            "_embedded"
        ]["events"]
    ]
    assert "lead_deleted" in types and "lead_restored" in types
