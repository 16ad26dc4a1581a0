"""Contacts, /leads/complex, custom fields, links, tasks, notes, events and webhook subscriptions."""

from __future__ import annotations

import pytest

from tests.kommo_sandbox.conftest import sample

pytestmark = pytest.mark.sandbox


def field_named(api, entity: str, name: str) -> dict:
    return next(
        f
        for f in api.get(f"/api/v4/{entity}/custom_fields").json()["_embedded"]["custom_fields"]
        if f["name"] == name
    )


def new_contact(api, email: str, phone: str) -> int:
    body = [
        {
            "first_name": "Nina",
            "last_name": "Search",
            "custom_fields_values": [
                {"field_code": "EMAIL", "values": [{"value": email, "enum_code": "WORK"}]},
                {"field_code": "PHONE", "values": [{"value": phone, "enum_code": "MOB"}]},
            ],
        }
    ]
    return api.post("/api/v4/contacts", body).json()["_embedded"]["contacts"][0]["id"]


def test_contacts_query_finds_by_email_and_by_phone_digits(api):
    contact_id = new_contact(api, "nina.search@findme.example", "+1 (312) 555-0177")
    by_email = api.get("/api/v4/contacts?query=nina.search@findme.example").json()["_embedded"]["contacts"]
    assert [c["id"] for c in by_email] == [contact_id]
    by_phone = api.get("/api/v4/contacts?query=13125550177").json()["_embedded"]["contacts"]
    assert contact_id in [c["id"] for c in by_phone]
    assert api.get("/api/v4/contacts?query=nobody-at-all@nowhere.example").status_code == 204


def test_contact_reads_back_multitext_with_enum_codes_like_the_sample(api):
    contact_id = new_contact(api, "shape@shape.example", "+14155550100")
    contact = api.get(f"/api/v4/contacts/{contact_id}").json()
    expected = sample("contacts-list.json")["_embedded"]["contacts"][0]
    assert set(expected) <= set(contact)
    phone = next(v for v in contact["custom_fields_values"] if v["field_code"] == "PHONE")
    assert set(expected["custom_fields_values"][0]) == set(phone)
    assert phone["field_type"] == "multitext"
    assert (
        set(phone["values"][0]) == {"value", "enum_id", "enum_code"}
        and phone["values"][0]["enum_code"] == "MOB"
    )
    assert contact["first_name"] == "Nina" and contact["name"] == "Nina Search"


def test_complex_answers_a_bare_array_and_links_contact_and_company(api):
    body = sample("leads-complex-request.json")
    item = body[0]
    item.pop("status_id"), item.pop("pipeline_id"), item.pop("responsible_user_id")
    item["_embedded"]["contacts"][0].pop("responsible_user_id")
    item["_embedded"]["contacts"][0]["custom_fields_values"][0] = {
        "field_code": "PHONE",
        "values": [{"value": "0965423364", "enum_code": "WORK"}],
    }
    response = api.post("/api/v4/leads/complex", body)
    assert response.status_code == 200
    result = response.json()
    assert isinstance(result, list)
    assert set(result[0]) == set(sample("leads-complex-response.json")[0])
    assert result[0]["request_id"] == ["1"] and result[0]["merged"] is False
    contact = api.get(f"/api/v4/contacts/{result[0]['contact_id']}?with=leads").json()
    assert contact["_embedded"]["companies"][0]["id"] == result[0]["company_id"]
    assert contact["_embedded"]["leads"][0]["id"] == result[0]["id"]


def test_complex_limits(api):
    assert api.post("/api/v4/leads/complex", [{"name": str(i)} for i in range(51)]).status_code == 422
    two = [{"name": "x", "_embedded": {"contacts": [{"name": "a"}, {"name": "b"}]}}]
    assert api.post("/api/v4/leads/complex", two).status_code == 400
    fields = [{"field_id": 1, "values": [{"value": "x"}]}] * 41
    response = api.post("/api/v4/leads/complex", [{"name": "x", "custom_fields_values": fields}])
    assert response.json()["validation-errors"][0]["errors"][0]["code"] == "TooMany"


def test_complex_merges_into_the_existing_deal_when_duplicate_control_is_on(api, admin):
    def submit(request_id: str) -> list[dict]:
        contact = {
            "first_name": "Dup",
            "custom_fields_values": [{"field_code": "EMAIL", "values": [{"value": "dup@dup.example"}]}],
        }
        body = [{"name": "Inbound", "request_id": request_id, "_embedded": {"contacts": [contact]}}]
        return api.post("/api/v4/leads/complex", body).json()

    first = submit("1")
    assert admin.put("/_sandbox/duplicate-control", {"enabled": True}).json() == {"enabled": True}
    try:
        second = submit("2")
    finally:
        admin.put("/_sandbox/duplicate-control", {"enabled": False})
    assert second == [{**first[0], "request_id": ["2"], "merged": True}]
    assert set(second[0]) == set(sample("leads-complex-response-merged.json")[0])


def test_custom_field_create_read_and_value_shapes(api):
    request = [
        {"name": "Seats", "type": "numeric"},
        {"name": "Go-live", "type": "date"},
        {
            "name": "Tier",
            "type": "select",
            "enums": [{"value": "Gold", "sort": 1}, {"value": "Silver", "sort": 2}],
        },
        {"name": "Signed", "type": "checkbox"},
    ]
    response = api.post("/api/v4/leads/custom_fields", request)
    assert response.status_code == 201
    body = response.json()
    assert set(body) == set(sample("custom-field-create-response.json"))
    created = {f["name"]: f for f in body["_embedded"]["custom_fields"]}
    assert set(sample("custom-field-create-201-httpcodes.json")) <= set(created["Tier"])
    assert [e["value"] for e in created["Tier"]["enums"]] == ["Gold", "Silver"]
    one = api.get(f"/api/v4/leads/custom_fields/{created['Tier']['id']}").json()
    assert one["id"] == created["Tier"]["id"] and "_embedded" not in one
    gold = created["Tier"]["enums"][0]
    values = [
        {"field_id": created["Seats"]["id"], "values": [{"value": 12}]},
        {"field_id": created["Go-live"]["id"], "values": [{"value": "2025-01-01T00:00:00+00:00"}]},
        {"field_id": created["Tier"]["id"], "values": [{"value": "Gold"}]},
        {"field_id": created["Signed"]["id"], "values": [{"value": True}]},
    ]
    lead_id = api.post("/api/v4/leads", [{"name": "cf", "custom_fields_values": values}]).json()["_embedded"][
        "leads"
    ][0]["id"]
    read = {v["field_name"]: v for v in api.get(f"/api/v4/leads/{lead_id}").json()["custom_fields_values"]}
    assert read["Seats"]["values"] == [{"value": "12"}] and read["Seats"]["field_type"] == "numeric"
    assert read["Go-live"]["values"] == [{"value": 1735689600}]
    assert read["Tier"]["values"] == [{"value": "Gold", "enum_id": gold["id"], "enum_code": None}]
    assert read["Signed"]["values"] == [{"value": True}]
    api.patch(
        f"/api/v4/leads/{lead_id}",
        {"custom_fields_values": [{"field_id": created["Seats"]["id"], "values": None}]},
    )
    after = {v["field_name"] for v in api.get(f"/api/v4/leads/{lead_id}").json()["custom_fields_values"]}
    assert "Seats" not in after and "Tier" in after


def test_custom_field_list_carries_totals_and_pages_by_50(api):
    data = api.get("/api/v4/contacts/custom_fields?limit=2").json()
    assert set(sample("custom-fields-leads-list.json")) == set(data)
    assert set(sample("custom-fields-leads-list.json")["_links"]) == set(data["_links"])
    assert (
        api.get("/api/v4/contacts/custom_fields?limit=200")
        .json()["_links"]["self"]["href"]
        .endswith("limit=50")
    )


def test_link_unlink_and_list_links(api, sandbox):
    catalog = api.get("/api/v4/catalogs").json()["_embedded"]["catalogs"][0]
    element = api.post(f"/api/v4/catalogs/{catalog['id']}/elements", [{"name": "Legal approver"}]).json()
    element_id = element["_embedded"]["elements"][0]["id"]
    assert set(sample("catalog-elements-post-response.json")["_embedded"]["elements"][0]) == set(
        element["_embedded"]["elements"][0]
    )
    lead_id = api.post("/api/v4/leads", [{"name": "links"}]).json()["_embedded"]["leads"][0]["id"]
    contact_id = api.post("/api/v4/contacts", [{"name": "Linked"}]).json()["_embedded"]["contacts"][0]["id"]
    body = [
        {"to_entity_id": contact_id, "to_entity_type": "contacts", "metadata": {"is_main": True}},
        {
            "to_entity_id": element_id,
            "to_entity_type": "catalog_elements",
            "metadata": {"quantity": 2, "catalog_id": catalog["id"]},
        },
    ]
    response = api.post(f"/api/v4/leads/{lead_id}/link", body)
    assert response.status_code == 200
    links = response.json()["_embedded"]["links"]
    assert set(sample("links-post-response.json")["_embedded"]["links"][0]) == set(links[0])
    assert links[0]["metadata"] == {"main_contact": True}
    listed = api.get(f"/api/v4/leads/{lead_id}/links").json()["_embedded"]["links"]
    assert {(link["to_entity_type"], link["to_entity_id"]) for link in listed} == {
        ("contacts", contact_id),
        ("catalog_elements", element_id),
    }
    lead = api.get(f"/api/v4/leads/{lead_id}?with=catalog_elements").json()
    assert lead["_embedded"]["catalog_elements"] == [
        {"id": element_id, "metadata": {"quantity": 2, "catalog_id": catalog["id"]}}
    ]
    unlink = [
        {
            "to_entity_id": element_id,
            "to_entity_type": "catalog_elements",
            "metadata": {"catalog_id": catalog["id"]},
        }
    ]
    response = api.post(f"/api/v4/leads/{lead_id}/unlink", unlink)
    assert response.status_code == 204 and response.content == b""
    mass = api.get(f"/api/v4/leads/links?filter[entity_id][]={lead_id}").json()["_embedded"]["links"]
    assert [(link["entity_id"], link["to_entity_type"]) for link in mass] == [(lead_id, "contacts")]
    bad = [{"to_entity_id": element_id, "to_entity_type": "catalog_elements", "metadata": {}}]
    assert api.post(f"/api/v4/leads/{lead_id}/link", bad).status_code == 400
    types = {
        e["type"]
        for e in api.get(f"/api/v4/events?filter[entity]=lead&filter[entity_id]={lead_id}").json()[
            "_embedded"
        ]["events"]
    }
    assert {"entity_linked", "entity_unlinked"} <= types


def test_catalog_element_values_read_back_as_strings(api):
    catalog = api.get("/api/v4/catalogs").json()["_embedded"]["catalogs"][0]
    fields = api.get(f"/api/v4/catalogs/{catalog['id']}/custom_fields").json()["_embedded"]["custom_fields"]
    approval = next(f for f in fields if f["name"] == "Approval status")
    elements = api.get(f"/api/v4/catalogs/{catalog['id']}/elements?limit=1").json()["_embedded"]["elements"]
    assert set(sample("catalog-elements.json")["_embedded"]["elements"][0]) == set(elements[0])
    approved = next(e for e in approval["enums"] if e["value"] == "Approved")
    body = {"custom_fields_values": [{"field_id": approval["id"], "values": [{"enum_id": approved["id"]}]}]}
    element = api.patch(f"/api/v4/catalogs/{catalog['id']}/elements/{elements[0]['id']}", body).json()
    status = next(v for v in element["custom_fields_values"] if v["field_id"] == approval["id"])
    assert status["values"][0]["value"] == "Approved"


def test_an_element_update_needs_the_id_of_an_element_of_that_catalog(api):
    catalog = api.get("/api/v4/catalogs").json()["_embedded"]["catalogs"][0]
    other = api.post("/api/v4/catalogs", [{"name": "Elsewhere"}]).json()["_embedded"]["catalogs"][0]
    stranger = api.post(f"/api/v4/catalogs/{other['id']}/elements", [{"name": "Not in the first"}]).json()
    stranger_id = stranger["_embedded"]["elements"][0]["id"]
    body = [{"id": stranger_id, "name": "x"}, {"name": "no id"}, {"id": 999_999_999, "name": "y"}]
    response = api.patch(f"/api/v4/catalogs/{catalog['id']}/elements", body)
    assert response.status_code == 400
    errors = {e["request_id"]: e["errors"] for e in response.json()["validation-errors"]}
    assert {rid: [(x["code"], x["path"]) for x in found] for rid, found in errors.items()} == {
        "0": [("NotFound", "id")],
        "1": [("NotBlank", "id")],
        "2": [("NotFound", "id")],
    }
    unchanged = api.get(f"/api/v4/catalogs/{other['id']}/elements/{stranger_id}").json()
    assert unchanged["name"] == "Not in the first"


def test_tasks_need_text_and_deadline_and_complete(api):
    response = api.post("/api/v4/tasks", [{"text": "x"}, {"complete_till": 1893456000}])
    paths = [e["errors"][0]["path"] for e in response.json()["validation-errors"]]
    assert response.status_code == 400 and paths == ["complete_till", "text"]
    lead_id = api.post("/api/v4/leads", [{"name": "tasks"}]).json()["_embedded"]["leads"][0]["id"]
    body = sample("tasks-post.json")
    body[0].update(entity_id=lead_id, complete_till=1893456000)
    created = api.post("/api/v4/tasks", body).json()["_embedded"]["tasks"][0]
    assert created["request_id"] == "example"
    assert api.get(f"/api/v4/leads/{lead_id}").json()["closest_task_at"] == 1893456000
    assert (
        api.patch(f"/api/v4/tasks/{created['id']}", sample("task-complete-request.json")).status_code == 200
    )
    task = api.get(f"/api/v4/tasks/{created['id']}").json()
    assert set(sample("tasks-list.json")["_embedded"]["tasks"][0]) == set(task)
    assert task["is_completed"] is True and task["result"] == {"text": "Reached the client"}
    listed = api.get(f"/api/v4/tasks?filter[entity_id][]={lead_id}&filter[is_completed]=1").json()[
        "_embedded"
    ]["tasks"]
    assert [t["id"] for t in listed] == [created["id"]]
    types = [
        e["type"]
        for e in api.get(f"/api/v4/events?filter[entity]=task&filter[entity_id]={task['id']}").json()[
            "_embedded"
        ]["events"]
    ]
    assert types == ["task_added", "task_completed"]


def test_notes_for_an_entity(api):
    lead_id = api.post("/api/v4/leads", [{"name": "notes"}]).json()["_embedded"]["leads"][0]["id"]
    response = api.post(
        f"/api/v4/leads/{lead_id}/notes", [{"note_type": "common", "params": {"text": "Met the CFO"}}]
    )
    assert response.status_code == 200
    notes = api.get(f"/api/v4/leads/{lead_id}/notes").json()["_embedded"]["notes"]
    assert [n["params"]["text"] for n in notes] == ["Met the CFO"]
    assert (
        api.post("/api/v4/leads/notes", [{"entity_id": lead_id, "params": {"text": "2"}}]).status_code == 200
    )
    assert (
        len(api.get(f"/api/v4/leads/notes?filter[entity_id][]={lead_id}").json()["_embedded"]["notes"]) == 2
    )
    events = api.get(
        f"/api/v4/events?filter[type]=common_note_added&filter[entity_id]={lead_id}&filter[entity]=lead"
    ).json()
    assert len(events["_embedded"]["events"]) == 2


def test_events_record_changes_with_the_acting_user_and_filter(api, sandbox):
    lead_id = api.post("/api/v4/leads", [{"name": "evented", "price": 1}]).json()["_embedded"]["leads"][0][
        "id"
    ]
    account = sandbox.store.account(sandbox.credentials["account_id"])
    pipeline = account.main_pipeline
    stage = next(s for s in pipeline.ordered_statuses() if s.name == "Legal review")
    manager = next(u for u in account.users.values() if not u.is_admin)
    api.patch(
        f"/api/v4/leads/{lead_id}",
        {"status_id": stage.id, "price": 2, "name": "evented 2", "responsible_user_id": manager.id},
    )
    events = api.get(f"/api/v4/events?filter[entity]=lead&filter[entity_id]={lead_id}").json()["_embedded"][
        "events"
    ]
    by_type = {e["type"]: e for e in events}
    assert {
        "lead_added",
        "lead_status_changed",
        "sale_field_changed",
        "name_field_changed",
        "entity_responsible_changed",
    } <= set(by_type)
    changed = by_type["lead_status_changed"]
    assert set(sample("events.json")["_embedded"]["events"][0]) == set(changed)
    assert isinstance(changed["id"], str)
    assert changed["created_by"] == account.admin_user.id
    assert changed["value_after"] == [{"lead_status": {"id": stage.id, "pipeline_id": pipeline.id}}]
    assert by_type["sale_field_changed"]["value_after"] == [{"sale_field_value": {"sale": 2}}]
    query = (
        f"/api/v4/events?filter[type]=lead_status_changed&filter[value_after][leads_statuses][0][pipeline_id]={pipeline.id}"
        f"&filter[value_after][leads_statuses][0][status_id]={stage.id}&filter[created_at][from]={changed['created_at']}"
    )
    found = api.get(query).json()["_embedded"]["events"]
    assert lead_id in [e["entity_id"] for e in found]
    assert api.get(f"/api/v4/events/{changed['id']}").json()["id"] == changed["id"]
    assert (
        api.get(f"/api/v4/events?filter[id]={changed['id']}").json()["_embedded"]["events"][0]["id"]
        == changed["id"]
    )


def test_creation_task_and_deletion_events_carry_kommo_s_documented_values(api, admin):
    """API.md §11: ``*_added`` name a note, not the first stage; task events, ``lead_deleted`` and
    ``lead_restored`` carry empty arrays on both sides."""
    lead_id = api.post("/api/v4/leads", [{"name": "shapes"}]).json()["_embedded"]["leads"][0]["id"]
    contact_id = new_contact(api, "shapes@shapes.example", "+14155550123")
    company_id = api.post("/api/v4/companies", [{"name": "Shapes Inc"}]).json()["_embedded"]["companies"][0][
        "id"
    ]
    task_id = api.post(
        "/api/v4/tasks",
        [{"text": "call", "complete_till": 1893456000, "entity_id": lead_id, "entity_type": "leads"}],
    ).json()["_embedded"]["tasks"][0]["id"]
    api.patch(f"/api/v4/tasks/{task_id}", {"is_completed": True, "result": {"text": "done"}})
    assert admin.post(f"/_sandbox/leads/{lead_id}/delete", {}).status_code == 200
    assert admin.post(f"/_sandbox/leads/{lead_id}/restore", {}).status_code == 200

    def events(entity: str, entity_id: int) -> dict[str, dict]:
        query = f"/api/v4/events?filter[entity]={entity}&filter[entity_id]={entity_id}"
        return {e["type"]: e for e in api.get(query).json()["_embedded"]["events"]}

    added = [
        events("lead", lead_id)["lead_added"],
        events("contact", contact_id)["contact_added"],
        events("company", company_id)["company_added"],
    ]
    for event in added:
        assert event["value_before"] == []
        [value] = event["value_after"]
        assert (
            list(value) == ["note"] and list(value["note"]) == ["id"] and isinstance(value["note"]["id"], int)
        )
    assert len({event["value_after"][0]["note"]["id"] for event in added}) == 3
    lead_events, task_events = events("lead", lead_id), events("task", task_id)
    for event in (lead_events["lead_deleted"], lead_events["lead_restored"], *task_events.values()):
        assert (event["value_before"], event["value_after"]) == ([], []), event["type"]
    assert set(task_events) == {"task_added", "task_completed"}


def test_events_page_by_100_at_most(api):
    data = api.get("/api/v4/events?limit=250").json()
    assert len(data["_embedded"]["events"]) == 100 and data["_links"]["self"]["href"].endswith("limit=100")
    types = api.get("/api/v4/events/types").json()
    assert set(sample("events-types.json")) == set(types)
    assert set(sample("events-types.json")["_embedded"]["events_types"][0]) == set(
        types["_embedded"]["events_types"][0]
    )


def test_webhook_subscriptions(api):
    assert api.get("/api/v4/webhooks").status_code == 204
    created = api.post("/api/v4/webhooks", sample("webhook-subscribe-request.json")).json()
    assert set(sample("webhook-subscribe-response.json")) == set(created)
    again = api.post(
        "/api/v4/webhooks", {"destination": "https://example.test", "settings": ["status_lead"]}
    ).json()
    assert again["id"] == created["id"] and again["settings"] == ["status_lead"]
    listed = api.get("/api/v4/webhooks?filter[destination]=https://example.test").json()
    assert set(sample("webhooks-list.json")) == set(listed) and listed["_total_items"] == 1
    assert api.post("/api/v4/webhooks", {"destination": "nope", "settings": ["bogus"]}).status_code == 400
    assert api.delete("/api/v4/webhooks", {"destination": "https://example.test"}).status_code == 204
    assert api.get("/api/v4/webhooks").status_code == 204


def test_account_users_and_pipelines_match_the_samples(api):
    account = api.get("/api/v4/account?with=task_types,users_groups,datetime_settings").json()
    assert set(sample("account.json")) <= set(account)
    assert {"task_types", "users_groups", "datetime_settings"} <= set(account["_embedded"])
    users = api.get("/api/v4/users?with=role,group").json()
    assert set(sample("users-list.json")) == set(users)
    assert set(sample("users-list.json")["_embedded"]["users"][0]) <= set(users["_embedded"]["users"][1])
    pipelines = api.get("/api/v4/leads/pipelines").json()
    assert set(sample("pipelines.json")) == set(pipelines)
    statuses = pipelines["_embedded"]["pipelines"][0]["_embedded"]["statuses"]
    assert set(sample("pipelines.json")["_embedded"]["pipelines"][0]["_embedded"]["statuses"][0]) == set(
        statuses[0]
    )
    system = {s["id"]: (s["sort"], s["color"], s["is_editable"]) for s in statuses if s["id"] in (142, 143)}
    assert system == {142: (10000, "#CCFF66", False), 143: (11000, "#D5D8DB", False)}
    assert statuses[0]["type"] == 1


def test_pipeline_creation_adds_the_system_statuses(api):
    response = api.post("/api/v4/leads/pipelines", sample("pipeline-create-request.json"))
    pipeline = response.json()["_embedded"]["pipelines"][0]
    statuses = {s["id"]: s for s in pipeline["_embedded"]["statuses"]}
    assert statuses[142]["name"] == "Won leads status custom name" and 143 in statuses
    assert [s["type"] for s in pipeline["_embedded"]["statuses"]].count(1) == 1
    assert api.get(f"/api/v4/leads/pipelines/{pipeline['id']}").json()["name"] == "Additional pipeline"


def _events(api, entity: str, entity_id: int, type_: str) -> list[dict]:
    response = api.get(
        f"/api/v4/events?filter[entity]={entity}&filter[entity_id]={entity_id}&filter[type]={type_}"
    )
    return response.json()["_embedded"]["events"] if response.status_code == 200 else []


def test_name_and_responsible_changes_record_the_same_event_values_for_every_entity(api, sandbox):
    account = sandbox.store.account(sandbox.credentials["account_id"])
    admin_id = account.admin_user.id
    manager = next(u for u in account.users.values() if not u.is_admin)
    lead_id = api.post("/api/v4/leads", [{"name": "lead before"}]).json()["_embedded"]["leads"][0]["id"]
    company_id = api.post("/api/v4/companies", [{"name": "company before"}]).json()["_embedded"]["companies"][
        0
    ]["id"]
    task_id = api.post("/api/v4/tasks", [{"text": "call back", "complete_till": 1_900_000_000}]).json()[
        "_embedded"
    ]["tasks"][0]["id"]
    catalog = api.get("/api/v4/catalogs").json()["_embedded"]["catalogs"][0]
    element_id = api.post(f"/api/v4/catalogs/{catalog['id']}/elements", [{"name": "element before"}]).json()[
        "_embedded"
    ]["elements"][0]["id"]

    api.patch(f"/api/v4/leads/{lead_id}", {"name": "lead after", "responsible_user_id": manager.id})
    api.patch(f"/api/v4/companies/{company_id}", {"name": "company after", "responsible_user_id": manager.id})
    api.patch(f"/api/v4/tasks/{task_id}", {"responsible_user_id": manager.id})
    api.patch(f"/api/v4/catalogs/{catalog['id']}/elements/{element_id}", {"name": "element after"})

    renamed = {
        ("lead", lead_id): ("lead before", "lead after"),
        ("company", company_id): ("company before", "company after"),
        (f"catalog_{catalog['id']}", element_id): ("element before", "element after"),
    }
    for (entity, entity_id), (before, after) in renamed.items():
        (event,) = _events(api, entity, entity_id, "name_field_changed")
        assert event["value_before"] == [{"name_field_value": {"name": before}}]
        assert event["value_after"] == [{"name_field_value": {"name": after}}]
    for entity, entity_id in (("lead", lead_id), ("company", company_id), ("task", task_id)):
        (event,) = _events(api, entity, entity_id, "entity_responsible_changed")
        assert event["value_before"] == [{"responsible_user": {"id": admin_id}}]
        assert event["value_after"] == [{"responsible_user": {"id": manager.id}}]
    assert _events(api, "task", task_id, "name_field_changed") == []
    assert _events(api, f"catalog_{catalog['id']}", element_id, "entity_responsible_changed") == []


def test_contacts_and_companies_filter_by_id_name_users_and_dates(api, sandbox):
    account = sandbox.store.account(sandbox.credentials["account_id"])
    manager = next(u for u in account.users.values() if not u.is_admin)
    for kind in ("contacts", "companies"):
        body = [
            {"name": f"filtered {kind} one"},
            {"name": f"filtered {kind} two", "responsible_user_id": manager.id},
        ]
        one, two = api.post(f"/api/v4/{kind}", body).json()["_embedded"][kind]

        def ids(query: str, kind: str = kind) -> set[int]:
            response = api.get(f"/api/v4/{kind}?{query}&limit=250")
            return (
                {r["id"] for r in response.json()["_embedded"][kind]}
                if response.status_code == 200
                else set()
            )

        assert ids(f"filter[id][]={one['id']}&filter[id][]={two['id']}") == {one["id"], two["id"]}
        assert ids(f"filter[name]=filtered {kind} two") == {two["id"]}
        mine = ids(f"filter[responsible_user_id][]={manager.id}")
        assert two["id"] in mine and one["id"] not in mine
        assert one["id"] in ids(f"filter[created_by][]={account.admin_user.id}")
        assert ids(f"filter[updated_by][]={manager.id}&filter[id][]={one['id']}") == set()
        since = api.get(f"/api/v4/{kind}/{two['id']}").json()["updated_at"]
        assert two["id"] in ids(f"filter[updated_at][from]={since}")
        assert ids(f"filter[updated_at][to]={since - 1}&filter[id][]={two['id']}") == set()


def test_tags_are_listed_per_entity_type_filtered_and_paged_like_kommo(api):
    lead_id = api.post(
        "/api/v4/leads", [{"name": "tagged", "_embedded": {"tags": [{"name": "vip-tags"}]}}]
    ).json()["_embedded"]["leads"][0]["id"]
    api.patch(f"/api/v4/leads/{lead_id}", {"tags_to_add": [{"name": "partner-tags"}]})
    api.post("/api/v4/contacts", [{"name": "tagged", "_embedded": {"tags": [{"name": "contact-only-tag"}]}}])

    listed = api.get("/api/v4/leads/tags?limit=250")
    names = {tag["name"] for tag in listed.json()["_embedded"]["tags"]}
    by_name = api.get("/api/v4/leads/tags?filter[name]=VIP-TAGS").json()["_embedded"]["tags"]
    by_query = api.get("/api/v4/leads/tags?query=partner").json()["_embedded"]["tags"]
    by_id = api.get(f"/api/v4/leads/tags?filter[id]={by_name[0]['id']}").json()["_embedded"]["tags"]
    paged = api.get("/api/v4/contacts/tags?limit=1").json()

    assert listed.status_code == 200
    assert {"vip-tags", "partner-tags"} <= names and "contact-only-tag" not in names
    assert [tag["name"] for tag in by_name] == ["vip-tags"] and set(by_name[0]) == {"id", "name", "color"}
    assert [tag["name"] for tag in by_query] == ["partner-tags"]
    assert by_id == by_name
    assert paged["_page"] == 1 and len(paged["_embedded"]["tags"]) == 1
    assert api.get("/api/v4/companies/tags?query=no-such-tag").status_code == 204
