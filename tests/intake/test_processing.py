"""Processing a submission against Kommo at the HTTP boundary: dedupe, creation, roles, call budget."""

from __future__ import annotations

import pytest

from apps.flows.intake import intake_submission_process
from apps.flows.sync import SYNC, mirror_follow
from apps.intake.models import IntakeSubmission
from apps.kommo import types
from apps.kommo.models.mirror import CatalogElement, Company, Contact, Lead, LeadCatalogElement, LeadContact
from apps.kommo.services.mirror import contacts_upsert_from_kommo
from apps.stakeholders.models import FieldMapping, FieldMappingValue, Role, Stakeholder, StakeholderEvent
from apps.stakeholders.services import stakeholders_derive_for_leads
from tests.intake.conftest import submission_body
from tests.kommo.payloads import payload
from tests.support.fake_kommo import MARKER_FIELD_ID

URL = "/api/v1/intake/leads"


def submit(api, body=None) -> IntakeSubmission:
    response = api.post(URL, body or submission_body(), format="json")
    assert response.status_code == 202, response.content
    return IntakeSubmission.objects.get(pk=response.json()["id"])


def process(submission: IntakeSubmission) -> IntakeSubmission:
    intake_submission_process(submission_id=submission.pk)
    submission.refresh_from_db()
    return submission


def role_mapping(account, source, **fields) -> FieldMapping:
    mapping = FieldMapping.objects.create(account=account, attribute="role", source=source, **fields)
    for enum_id, code in ((11, "decision_maker"), (12, "lawyer")):
        FieldMappingValue.objects.create(mapping=mapping, enum_id=enum_id, role=Role.objects.get(code=code))
    return mapping


def test_new_people_cost_one_search_per_identity_one_contacts_post_one_complex_and_one_link(api, kommo):
    submission = process(submit(api))

    lead_id = submission.kommo_lead_id
    _, lee_id = submission.kommo_contact_ids
    assert kommo.calls == [
        "GET /api/v4/contacts?query=ann@acme.example",
        "GET /api/v4/contacts?query=+14155550101",
        "GET /api/v4/contacts?query=lee@acme.example",
        "POST /api/v4/contacts",
        "POST /api/v4/leads/complex",
        f"POST /api/v4/leads/{lead_id}/link",
    ]
    assert submission.status == IntakeSubmission.Status.DONE
    assert [outcome["outcome"] for outcome in submission.contact_outcomes] == ["created", "created"]
    complex_item = kommo.body(4)[0]
    assert complex_item["_embedded"]["contacts"][0]["name"] == "Ann Buyer"
    assert complex_item["_embedded"]["companies"] == [{"name": "Acme Inc."}]
    assert (complex_item["pipeline_id"], complex_item["status_id"]) == (3001, 4001)
    assert submission.kommo_marker.startswith(f"intake{submission.pk}t")
    assert complex_item["custom_fields_values"] == [
        {"field_id": MARKER_FIELD_ID, "values": [{"value": submission.kommo_marker}]}
    ]
    assert kommo.body(5) == [
        {"to_entity_id": lee_id, "to_entity_type": "contacts", "metadata": {"is_main": False}}
    ]


def test_two_people_found_as_one_contact_link_it_once(api, kommo):
    lee = kommo.add_contact("Lee Lawyer", emails=("lee@acme.example", "legal@acme.example"))
    body = submission_body()
    body["contacts"].append({"name": "Legal team", "emails": ["legal@acme.example"]})

    submission = process(submit(api, body))

    assert [outcome["kommo_id"] for outcome in submission.contact_outcomes][1:] == [lee["id"], lee["id"]]
    link = kommo.body(kommo.calls.index(f"POST /api/v4/leads/{submission.kommo_lead_id}/link"))
    assert link == [{"to_entity_id": lee["id"], "to_entity_type": "contacts", "metadata": {"is_main": False}}]


def test_created_people_and_the_deal_are_mirrored_so_the_next_submission_finds_them_locally(api, kommo):
    first = process(submit(api))
    lead = Lead.objects.get(kommo_id=first.kommo_lead_id)
    assert set(LeadContact.objects.filter(lead=lead).values_list("contact_kommo_id", flat=True)) == set(
        first.kommo_contact_ids
    )
    assert LeadContact.objects.get(lead=lead, is_main=True).contact_kommo_id == first.kommo_contact_ids[0]
    assert (lead.name, lead.pipeline_kommo_id, lead.status_kommo_id, lead.updated_at) == (
        "Acme — 40 seats",
        3001,
        4001,
        None,
    )
    ann = Contact.objects.get(kommo_id=first.kommo_contact_ids[0])
    assert (ann.emails, ann.phones, ann.company_kommo_id) == (
        ["ann@acme.example"],
        ["+14155550101"],
        first.kommo_company_id,
    )
    assert Company.objects.get(kommo_id=first.kommo_company_id).name == "Acme Inc."
    assert not any(call.startswith("GET") and "query=" not in call for call in kommo.calls)
    calls_before = len(kommo.calls)

    second = process(submit(api, submission_body(deal={"name": "Acme — renewal"})))

    assert [call for call in kommo.calls[calls_before:] if "query=" in call] == []
    assert second.kommo_contact_ids == first.kommo_contact_ids
    assert [outcome["found_by"] for outcome in second.contact_outcomes] == ["mirror", "mirror"]
    assert len(kommo.contacts_created()) == 2
    complex_item = kommo.body(kommo.calls.index("POST /api/v4/leads/complex", calls_before))[0]
    assert complex_item["_embedded"]["companies"] == [{"id": first.kommo_company_id}]


def test_kommos_own_version_replaces_the_mirrored_copy_of_what_intake_sent(api, kommo, account):
    submission = process(submit(api))
    ann_id = submission.kommo_contact_ids[0]
    kommo.contacts[ann_id]["name"] = "Ann Buyer (renamed in Kommo)"

    contacts_upsert_from_kommo(
        account=account, contacts=[types.Contact.from_api(kommo.contacts[ann_id])], follow=mirror_follow
    )

    ann = Contact.objects.get(kommo_id=ann_id)
    assert ann.name == "Ann Buyer (renamed in Kommo)"
    assert ann.updated_at is not None and "_portal_echo" not in ann.raw


def test_a_person_known_in_the_mirror_goes_into_the_deal_by_id_without_a_search(api, kommo, account):
    ann = kommo.add_contact("Ann Buyer", emails=("ann@acme.example",), phones=("+14155550101",))
    contacts_upsert_from_kommo(account=account, contacts=[types.Contact.from_api(ann)], follow=mirror_follow)

    submission = process(submit(api))

    assert "GET /api/v4/contacts?query=ann@acme.example" not in kommo.calls
    assert kommo.calls[0] == "GET /api/v4/contacts?query=lee@acme.example"
    complex_item = kommo.body(kommo.calls.index("POST /api/v4/leads/complex"))[0]
    assert complex_item["_embedded"]["contacts"] == [{"id": ann["id"]}]
    assert submission.contact_outcomes[0] | {"filled": None} == submission.contact_outcomes[0] | {
        "kommo_id": ann["id"],
        "outcome": "linked_existing",
        "found_by": "mirror",
        "matched": "email:ann@acme.example",
        "filled": None,
    }
    assert "PATCH /api/v4/contacts" not in kommo.calls


def test_a_person_found_by_kommo_search_is_linked_and_only_its_empty_phone_is_filled(api, kommo):
    ann = kommo.add_contact("Ann B.", emails=("ANN@acme.example",))

    submission = process(submit(api))

    searches = [call for call in kommo.calls if "query=" in call]
    assert searches == [
        "GET /api/v4/contacts?query=ann@acme.example",
        "GET /api/v4/contacts?query=lee@acme.example",
    ]
    outcome = submission.contact_outcomes[0]
    assert (outcome["kommo_id"], outcome["found_by"], outcome["filled"]) == (
        ann["id"],
        "kommo_search",
        ["phones"],
    )
    patch = kommo.body(kommo.calls.index("PATCH /api/v4/contacts"))
    assert patch == [
        {
            "id": ann["id"],
            "custom_fields_values": [
                {"field_code": "PHONE", "values": [{"value": "+14155550101", "enum_code": "WORK"}]}
            ],
        }
    ]
    assert Contact.objects.get(kommo_id=ann["id"]).phones == ["+14155550101"]
    assert Contact.objects.get(kommo_id=ann["id"]).name == "Ann B."
    assert "GET /api/v4/contacts?filter[id][]=" not in " ".join(kommo.calls)


def test_an_existing_contact_with_another_phone_keeps_it(api, kommo):
    kommo.add_contact("Ann", emails=("ann@acme.example",), phones=("+14155550199",))

    submission = process(submit(api))

    assert submission.contact_outcomes[0]["filled"] == []
    assert "PATCH /api/v4/contacts" not in kommo.calls


def test_a_search_hit_that_only_contains_the_text_is_not_the_same_person(api, kommo):
    kommo.add_contact("Jo", emails=("joann@acme.example.org",))

    submission = process(
        submit(api, submission_body(contacts=[{"name": "Ann", "emails": ["ann@acme.example"]}]))
    )

    assert submission.contact_outcomes[0]["outcome"] == "created"


def test_kommos_merged_answer_is_recorded_and_nothing_is_created_twice(api, kommo):
    merged = payload("leads-complex-response-merged.json")[0]
    kommo.merge_into = (merged["id"], merged["contact_id"])
    kommo.leads[merged["id"]] = {
        "id": merged["id"],
        "name": "Existing",
        "status_id": 1,
        "pipeline_id": 1,
        "_embedded": {"contacts": [{"id": merged["contact_id"], "is_main": True}], "catalog_elements": []},
    }

    submission = process(submit(api))

    assert (submission.kommo_lead_id, submission.lead_merged) == (9774766, True)
    assert submission.contact_outcomes[0]["kommo_id"] == 12117258
    assert submission.contact_outcomes[0]["found_by"] == "kommo_duplicate_control"
    assert kommo.calls.count("POST /api/v4/leads/complex") == 1
    assert submission.status == IntakeSubmission.Status.DONE


def test_roles_go_into_the_contact_role_field_of_new_and_of_empty_existing_contacts(api, kommo, account):
    role_mapping(account, "contact_field", field_id=900)
    lee = kommo.add_contact("Lee", emails=("lee@acme.example",))

    submission = process(submit(api))

    complex_contact = kommo.body(kommo.calls.index("POST /api/v4/leads/complex"))[0]["_embedded"]["contacts"][
        0
    ]
    assert {"field_id": 900, "values": [{"enum_id": 11}]} in complex_contact["custom_fields_values"]
    patch = kommo.body(kommo.calls.index("PATCH /api/v4/contacts"))
    assert patch == [
        {"id": lee["id"], "custom_fields_values": [{"field_id": 900, "values": [{"enum_id": 12}]}]}
    ]
    assert [outcome["role_recorded"] for outcome in submission.contact_outcomes] == [
        ["contact_field"],
        ["contact_field"],
    ]


def test_a_role_already_set_on_an_existing_contact_is_not_overwritten(api, kommo, account):
    role_mapping(account, "contact_field", field_id=900)
    role = {
        "field_id": 900,
        "field_name": "Role in the purchase",
        "field_code": None,
        "field_type": "select",
        "values": [{"value": "User", "enum_id": 13}],
    }
    kommo.add_contact("Lee", emails=("lee@acme.example",), extra=(role,))

    submission = process(submit(api))

    assert submission.contact_outcomes[1]["role_recorded"] == []
    assert "PATCH /api/v4/contacts" not in kommo.calls


def test_roles_become_stakeholders_catalog_elements_linked_in_the_same_link_call(api, kommo, account):
    role_mapping(account, "catalog_field", field_id=901, catalog_id=77)

    submission = process(submit(api))

    elements = kommo.body(kommo.calls.index("POST /api/v4/catalogs/77/elements"))
    assert [(e["name"], e["custom_fields_values"]) for e in elements] == [
        ("Ann Buyer", [{"field_id": 901, "values": [{"enum_id": 11}]}]),
        ("Lee Lawyer", [{"field_id": 901, "values": [{"enum_id": 12}]}]),
    ]
    link_calls = [call for call in kommo.calls if call.endswith("/link")]
    assert len(link_calls) == 1
    link = kommo.body(kommo.calls.index(link_calls[0]))
    assert [item["to_entity_type"] for item in link] == ["contacts", "catalog_elements", "catalog_elements"]
    assert all(item["metadata"]["catalog_id"] == 77 for item in link[1:])
    assert all(
        outcome["role_recorded"][0].startswith("catalog_element:") for outcome in submission.contact_outcomes
    )


def test_kommo_validation_errors_are_kept_and_the_submission_fails(api, kommo):
    kommo.answer_next("/api/v4/leads/complex", 400, payload("error-validation.json"))

    submission = process(submit(api))

    assert submission.status == IntakeSubmission.Status.FAILED
    assert submission.kommo_errors[0] == {
        "request_id": "0",
        "code": "NotSupportedChoice",
        "path": "custom_fields_values.0.field_id",
        "detail": "The value you selected is not a valid choice.",
    }
    assert submission.kommo_lead_id is None


@pytest.mark.parametrize("status_now", ["done", "processing", "rejected"])
def test_only_a_waiting_submission_is_processed(api, kommo, status_now):
    submission = submit(api)
    IntakeSubmission.objects.filter(pk=submission.pk).update(status=status_now)

    assert intake_submission_process(submission_id=submission.pk) is False
    assert kommo.calls == []


def test_a_filled_field_is_in_the_mirror_so_the_next_submission_does_not_fill_it_again(api, kommo):
    without_phone = [{"name": "Ann", "emails": ["ann@acme.example"]}]
    with_phone = [{"name": "Ann", "emails": ["ann@acme.example"], "phones": ["+14155550101"]}]
    process(submit(api, submission_body(deal={"name": "One"}, contacts=without_phone)))

    second = process(submit(api, submission_body(deal={"name": "Two"}, contacts=with_phone)))
    third = process(submit(api, submission_body(deal={"name": "Three"}, contacts=with_phone)))

    assert second.contact_outcomes[0]["filled"] == ["phones"]
    assert third.contact_outcomes[0]["filled"] == []
    assert kommo.calls.count("PATCH /api/v4/contacts") == 1


def test_a_submissions_stakeholders_enter_the_history_as_intakes(api, kommo, account):
    """The flow's mirror writes derive the deal's people: their history rows say intake, not sync."""
    role_mapping(account, "contact_field", field_id=900)
    ann = {"name": "Ann Buyer", "emails": ["ann@acme.example"], "role": "decision_maker"}
    lee = {"name": "Lee Lawyer", "emails": ["lee@acme.example"], "role": "lawyer"}

    submission = process(submit(api, submission_body(contacts=[ann, lee])))

    history = StakeholderEvent.objects.filter(lead__kommo_id=submission.kommo_lead_id)
    assert sorted(history.filter(field="presence").values_list("new", flat=True)) == [
        "Ann Buyer",
        "Lee Lawyer",
    ]
    assert set(history.values_list("source", "user_id")) == {("intake", None)}


def test_a_person_sent_under_another_name_is_one_stakeholder_of_the_deal_named_as_in_kommo(
    api, kommo, account
):
    role_mapping(account, "contact_field", field_id=900)
    role_mapping(account, "catalog_field", field_id=901, catalog_id=77)
    kommo.add_contact("Ann Buyer", emails=("ann@acme.example",))
    ann_b = {"name": "Ann B.", "emails": ["ann@acme.example"], "role": "decision_maker"}

    submission = process(submit(api, submission_body(contacts=[ann_b])))

    elements = kommo.body(kommo.calls.index("POST /api/v4/catalogs/77/elements"))
    assert [element["name"] for element in elements] == ["Ann Buyer"]
    lead = Lead.objects.get(kommo_id=submission.kommo_lead_id)
    stakeholders_derive_for_leads(account=account, lead_ids=[lead.pk], provenance=SYNC)
    rows = list(Stakeholder.objects.filter(lead=lead))
    assert [(row.name, row.role.code, row.source) for row in rows] == [
        ("Ann Buyer", "decision_maker", "both")
    ]


def test_a_person_whose_element_is_already_on_the_merged_deal_gets_no_second_one(api, kommo, account):
    role_mapping(account, "catalog_field", field_id=901, catalog_id=77)
    merged = payload("leads-complex-response-merged.json")[0]
    kommo.merge_into = (merged["id"], merged["contact_id"])
    kommo.leads[merged["id"]] = {
        "id": merged["id"],
        "name": "Existing",
        "status_id": 1,
        "pipeline_id": 1,
        "_embedded": {"contacts": [{"id": merged["contact_id"], "is_main": True}], "catalog_elements": []},
    }
    lead = Lead.objects.create(
        account=account, kommo_id=merged["id"], name="Existing", pipeline_kommo_id=1, status_kommo_id=1
    )
    element = CatalogElement.objects.create(
        account=account, kommo_id=5501, catalog_kommo_id=77, name="Ann Buyer"
    )
    LeadCatalogElement.objects.create(lead=lead, element=element, element_kommo_id=5501, catalog_kommo_id=77)

    submission = process(submit(api))

    elements = kommo.body(kommo.calls.index("POST /api/v4/catalogs/77/elements"))
    assert [element["name"] for element in elements] == ["Lee Lawyer"]
    assert submission.contact_outcomes[0]["role_recorded"] == ["catalog_element:5501"]


def test_a_submission_kommo_refused_says_who_was_created_and_who_was_not(api, kommo):
    kommo.answer_next("/api/v4/leads/complex", 400, payload("error-validation.json"))

    submission = process(submit(api))
    answer = api.get(f"/api/v1/intake/submissions/{submission.pk}").json()

    assert submission.status == IntakeSubmission.Status.FAILED
    ann, lee = submission.contact_outcomes
    assert (ann["outcome"], ann["kommo_id"]) == ("not_created", None)
    assert lee["outcome"] == "created" and lee["kommo_id"] is not None
    assert [person["outcome"] for person in answer["contacts"]] == ["not_created", "created"]
