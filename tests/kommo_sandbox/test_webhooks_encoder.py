"""The webhook wire format, compared with real deliveries and the documentation's renderings.

Each test describes an entity the way the sandbox's store does (API v4 read shape) and checks that the
encoder turns it into exactly what Kommo sent: the same keys in the same order, every value a string.
"""

from __future__ import annotations

from typing import Any

import pytest

from kommo_sandbox.changes import Change
from kommo_sandbox.webhooks import (
    Item,
    body_pairs,
    custom_fields_pairs,
    dp_pairs,
    form_encode,
    item_fields,
    routes_for,
    section_key,
    webhook_pairs,
)
from tests.kommo_sandbox.webhook_doubles import (
    curl_headers,
    curl_pairs,
    decode_form,
    doc_pairs,
    fixture_bytes,
)


def cf(field_id: int, name: str, field_type: str, *values: dict[str, Any], code: str | None = None) -> dict:
    return {
        "field_id": field_id,
        "field_name": name,
        "field_code": code,
        "field_type": field_type,
        "values": list(values),
    }


def lead(**fields: Any) -> dict[str, Any]:
    """A v4 lead with the fields that the captures do not vary."""
    base: dict[str, Any] = {
        "name": "",
        "price": 0,
        "group_id": 0,
        "closed_at": None,
        "loss_reason_id": None,
        "is_deleted": False,
        "custom_fields_values": None,
        "_embedded": {"tags": [], "companies": []},
    }
    return base | fields


def items_only(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in pairs if not k.startswith("account[")]


def encode_alone(change: Change, action: str, **history: int) -> list[tuple[str, str]]:
    """The item pairs of ``change`` as the documentation renders them (no account block)."""
    item = Item(section_key(change, action), tuple(item_fields(change, action, **history)))
    return body_pairs([item], [], account_position="first")


# --- real deliveries --------------------------------------------------------------------------------------

STATUS_2021_LEAD = lead(
    id=30267969,
    name="apple tv 3",
    price=1,
    responsible_user_id=1764433,
    status_id=16525558,
    pipeline_id=788512,
    created_by=1764433,
    updated_by=1760815,
    created_at=1615894221,
    updated_at=1615985846,
    account_id=16503244,
    custom_fields_values=[
        cf(491053, "IMEI/SERIE", "text", {"value": "1"}),
        cf(481305, "Cind trebuie?", "date", {"value": 1615845600}),
        cf(496779, "Stare Device", "select", {"value": "Zghirieturi minore", "enum_id": 959761}),
        cf(481313, "Tip Lead", "select", {"value": "Lead nou", "enum_id": 932119}),
        cf(481307, "Unde au aflat?", "select", {"value": "Google", "enum_id": 932073}),
    ],
    _embedded={"tags": [{"id": 482205, "name": "Sasa", "color": None}], "companies": []},
)
STATUS_2021_ACCOUNT = {
    "subdomain": "irestoremoldova",
    "id": "16503244",
    "self": "https://irestoremoldova.amocrm.ru",
}


def test_a_lead_status_change_encodes_byte_for_byte_like_the_2021_capture() -> None:
    change = Change(
        account_id=16503244,
        entity="lead",
        action="status",
        entity_id=30267969,
        current=STATUS_2021_LEAD,
        previous=STATUS_2021_LEAD | {"status_id": 16525555, "updated_at": 1615894221},
        user_id=1760815,
    )

    pairs = webhook_pairs(
        change, "status", STATUS_2021_ACCOUNT, account_position="last", old_status_id=16525555
    )

    assert form_encode(pairs).encode() == fixture_bytes("leads-status.form.txt")


def test_the_date_field_quirk_holds_a_bare_timestamp_without_a_value_key() -> None:
    pairs = dict(custom_fields_pairs([cf(481305, "Cind trebuie?", "date", {"value": 1615845600})]))

    assert pairs == {
        "[custom_fields][0][id]": "481305",
        "[custom_fields][0][name]": "Cind trebuie?",
        "[custom_fields][0][values][0]": "1615845600",
    }


def test_a_date_time_given_as_rfc3339_is_sent_as_unix_seconds() -> None:
    pairs = custom_fields_pairs([cf(7, "Meeting", "date_time", {"value": "2021-03-15T22:00:00+00:00"})])

    assert pairs[-1] == ("[custom_fields][0][values][0]", "1615845600")


def test_a_lead_add_matches_the_2025_capture_with_the_account_block_first() -> None:
    change = Change(
        account_id=32427762,
        entity="lead",
        action="add",
        entity_id=32966269,
        current=lead(
            id=32966269,
            name="Test",
            price=999,
            responsible_user_id=10000698,
            status_id=76789230,
            pipeline_id=9621010,
            created_by=10000698,
            updated_by=10000698,
            created_at=1748268669,
            updated_at=1748268669,
            account_id=32427762,
        ),
        user_id=10000698,
    )
    account = {"subdomain": "etesttask", "id": "32427762", "self": "https://etesttask.amocrm.ru"}

    assert webhook_pairs(change, "add", account) == curl_pairs("leads-add.curl.txt")


def test_a_contact_add_matches_the_2025_capture() -> None:
    contact = {
        "id": 37054081,
        "name": "Абиба абибович",
        "first_name": "Абиба",
        "last_name": "абибович",
        "responsible_user_id": 10000698,
        "created_by": 10000698,
        "updated_by": 10000698,
        "created_at": 1748289231,
        "updated_at": 1748289231,
        "account_id": 32427762,
        "custom_fields_values": None,
        "_embedded": {"tags": [], "companies": []},
    }
    change = Change(32427762, "contact", "add", 37054081, contact, user_id=10000698)
    account = {"subdomain": "etesttask", "id": "32427762", "self": "https://etesttask.amocrm.ru"}

    pairs = webhook_pairs(change, "add", account)

    assert pairs == curl_pairs("contacts-add.curl.txt")
    assert "contacts%5Badd%5D%5B0%5D%5Bname%5D=%D0%90%D0%B1%D0%B8%D0%B1%D0%B0+" in form_encode(pairs)


def test_the_2025_captures_carry_the_headers_the_sender_sends() -> None:
    headers = curl_headers("leads-add.curl.txt")

    assert headers["user-agent"] == "amoCRM-Webhooks/3.0"
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert headers["accept-encoding"] == "gzip"


def test_the_digital_pipeline_body_is_the_captured_seven_keys_byte_for_byte() -> None:
    moved = {"id": 10754147, "status_id": 54423922, "pipeline_id": 6344290, "name": "Deal", "price": 10}
    change = Change(
        account_id=30307558,
        entity="lead",
        action="status",
        entity_id=10754147,
        current=moved,
        previous=moved | {"status_id": 54435014},
    )

    pairs = dp_pairs(change, {"subdomain": "anyor", "id": "30307558", "self": "https://anyor.kommo.com"})

    recorded = fixture_bytes("dp-leads-status.form.txt").rstrip(b"\n")  # the file ends with a newline
    assert form_encode(pairs).encode() == recorded
    assert [k for k, _ in pairs] == [k for k, _ in decode_form(recorded.decode())]


def test_the_digital_pipeline_add_variant_carries_only_the_lead_ids_and_the_account() -> None:
    created = {"id": 5, "status_id": 60, "pipeline_id": 7, "name": "Inbound", "price": 0}
    change = Change(account_id=9, entity="lead", action="add", entity_id=5, current=created)

    pairs = dp_pairs(change, {"subdomain": "acme", "id": "9", "self": "https://acme.kommo.com"})

    assert pairs == [
        ("leads[add][0][id]", "5"),
        ("leads[add][0][status_id]", "60"),
        ("leads[add][0][pipeline_id]", "7"),
        ("account[id]", "9"),
        ("account[subdomain]", "acme"),
    ]


def test_the_digital_pipeline_mail_in_body_is_the_documented_shape_byte_for_byte() -> None:
    """An incoming e-mail: the lead's ids under ``leads[mail_in]`` (API.md §12.3), the account block last."""
    current = {"id": 501, "status_id": 62, "pipeline_id": 7001, "name": "Acme renewal", "price": 9}
    change = Change(account_id=31000001, entity="lead", action="mail_in", entity_id=501, current=current)

    pairs = dp_pairs(change, {"subdomain": "acme", "id": "31000001", "self": "https://acme.kommo.com"})

    assert form_encode(pairs).encode() == fixture_bytes("dp-leads-mail_in.constructed.form.txt")
    assert routes_for(change) == []  # no general webhook announces an e-mail, only its note


# --- the documentation's renderings -----------------------------------------------------------------------

DOC_LEAD_FIELDS = [
    cf(1118164, "Benefit", "monetary", {"value": "1000"}),
    cf(1246483, "Text", "text", {"value": "Text"}),
    cf(1246485, "Numeric", "numeric", {"value": "123"}),
    cf(1246489, "Select", "select", {"value": "2", "enum_id": 908107}),
    cf(1246491, "Date", "date", {"value": 1725915600}),
]
DOC_LEAD = lead(
    id=15318175,
    price=1000,
    responsible_user_id=12345678,
    status_id=67548619,
    pipeline_id=8572511,
    created_by=11087123,
    updated_by=11087123,
    created_at=1726572752,
    updated_at=1726572758,
    account_id=12345678,
    custom_fields_values=DOC_LEAD_FIELDS,
)


def test_a_lead_status_change_matches_the_documentation() -> None:
    change = Change(12345678, "lead", "status", 15318175, DOC_LEAD, DOC_LEAD | {"status_id": 67548607})

    assert encode_alone(change, "status", old_status_id=67548607) == doc_pairs("leads-status.doc.json")


def test_a_responsible_change_matches_the_documentation_including_the_remembered_old_status() -> None:
    current = DOC_LEAD | {"responsible_user_id": 1234567, "updated_at": 1726572882}
    change = Change(
        12345678, "lead", "responsible", 15318175, current, DOC_LEAD | {"responsible_user_id": 12345673}
    )

    assert encode_alone(change, "responsible", old_status_id=67548607) == doc_pairs(
        "leads-responsible.doc.json"
    )


def test_a_lead_update_matches_the_documentation_but_for_its_typo() -> None:
    current = lead(
        id=123456789,
        price=1000,
        responsible_user_id=11000000,
        status_id=67548615,
        pipeline_id=8572511,
        created_by=11087123,
        updated_by=11087123,
        created_at=1726566390,
        updated_at=1726567767,
        account_id=12345678,
        custom_fields_values=[
            cf(1118164, "Benefit", "monetary", {"value": "1000"}),
            cf(1246483, "Text", "text", {"value": "Text"}),
            cf(1246485, "Numeric", "numeric", {"value": 123}),
            cf(1246487, "Toggle switch", "checkbox", {"value": True}),
            cf(1246491, "Date", "date", {"value": 1729717200}),
            cf(1246493, "Currency", "monetary", {"value": 200.0}),
        ],
    )
    change = Change(12345678, "lead", "update", 123456789, current, current | {"status_id": 67548607})
    expected = dict(doc_pairs("leads-update.doc.json"))
    expected["leads[update][0][date_create]"] = "1726566390"  # the page prints "17265663a90"

    assert encode_alone(change, "update", old_status_id=67548607) == list(expected.items())


def test_a_lead_add_and_restore_match_the_documentation() -> None:
    added = lead(
        id=1111111,
        name="New Lead",
        price=500,
        responsible_user_id=3333333,
        status_id=2222222,
        pipeline_id=5555555,
        created_by=44444444,
        updated_by=44444444,
        created_at=1726566390,
        updated_at=1726566390,
        account_id=66666666,
        custom_fields_values=[
            cf(77777777, "Benefit", "monetary", {"value": 0}),
            cf(88888888, "Text", "text", {"value": "Text"}),
            cf(9999999, "Numeric", "numeric", {"value": "123"}),
            cf(12345678, "Toggle switch", "checkbox", {"value": True}),
            cf(87654321, "Date", "date", {"value": 1729717200}),
            cf(12312312, "Currency", "monetary", {"value": "200"}),
        ],
    )
    restored = lead(
        id=15317715,
        name="123",
        price=80,
        responsible_user_id=12345678,
        status_id=67548607,
        pipeline_id=8572511,
        created_by=11087123,
        updated_by=11087123,
        created_at=1726571070,
        updated_at=1726572650,
        account_id=12345678,
        custom_fields_values=[cf(1118164, "Benfit", "monetary", {"value": "1000"})],
    )

    add = Change(66666666, "lead", "add", 1111111, added)
    restore = Change(12345678, "lead", "restore", 15317715, restored, restored | {"is_deleted": True})

    assert encode_alone(add, "add") == doc_pairs("leads-add.doc.json")
    assert encode_alone(restore, "restore") == doc_pairs("leads-restore.doc.json")


def test_a_lead_delete_carries_only_id_status_and_pipeline() -> None:
    deleted = lead(id=12345678, status_id=67548607, pipeline_id=8572511, is_deleted=True, name="Gone")
    change = Change(1, "lead", "delete", 12345678, deleted, deleted | {"is_deleted": False})

    assert encode_alone(change, "delete") == doc_pairs("leads-delete.doc.json")


def test_a_text_note_on_a_lead_matches_the_documentation_but_for_the_author_name() -> None:
    note = {
        "id": 4600471,
        "entity_id": 15320411,
        "entity_type": "leads",
        "note_type": "common",
        "params": {"text": "note text"},
        "responsible_user_id": 11087123,
        "group_id": 0,
        "created_by": 11087123,
        "updated_by": 11087123,
        "created_at": 1726580291,
        "updated_at": 1726580329,
        "account_id": 32720107,
    }
    change = Change(32720107, "lead", "note", 15320411, note, user_id=11087123)
    expected = dict(doc_pairs("leads-note-text.doc.json"))
    # The change names the author by id only; Kommo adds the user's name.
    expected["leads[note][0][note][metadata]"] = '{"event_source":{"id":11087123,"type":1}}'

    assert encode_alone(change, "note") == list(expected.items())


def test_a_contact_add_matches_the_documentation_with_codes_enums_and_birthday() -> None:
    contact = {
        "id": 17611273,
        "name": "Contact Name",
        "responsible_user_id": 11087123,
        "created_by": 11087123,
        "updated_by": 11087123,
        "created_at": 1726573127,
        "updated_at": 1726573127,
        "account_id": 32720107,
        "custom_fields_values": [
            cf(
                771906,
                "Phone",
                "multitext",
                {"value": "1234567890", "enum_id": 552476, "enum_code": "WORK"},
                code="PHONE",
            ),
            cf(
                771908,
                "Email",
                "multitext",
                {"value": "[email protected]", "enum_id": 552488, "enum_code": "WORK"},
                code="EMAIL",
            ),
            cf(782386, "Birthday", "birthday", {"value": 316483200}),
            cf(791668, "Bio", "textarea", {"value": "Text"}),
            cf(791730, "Any radiobutton", "radiobutton", {"value": "2", "enum_id": 566642}),
        ],
        "_embedded": {"tags": [], "companies": []},
    }
    change = Change(32720107, "contact", "add", 17611273, contact)
    expected = [
        # The page renders this radiobutton's values as an object; every capture indexes values.
        (
            key.replace("[values][value]", "[values][0][value]").replace(
                "[values][enum]", "[values][0][enum]"
            ),
            value,
        )
        for key, value in doc_pairs("contacts-add-contact.doc.json")
    ]

    assert encode_alone(change, "add") == expected


def test_a_company_arrives_under_contacts_with_type_company_and_its_linked_leads() -> None:
    company = {
        "id": 17612521,
        "name": "Company name",
        "responsible_user_id": 11087123,
        "created_by": 11087123,
        "updated_by": 11087123,
        "created_at": 1726576533,
        "updated_at": 1726576534,
        "account_id": 32720107,
        "custom_fields_values": None,
        "_embedded": {"tags": [], "leads": [{"id": 15319601}]},
    }
    change = Change(32720107, "company", "add", 17612521, company)

    assert encode_alone(change, "add") == doc_pairs("contacts-add-company.doc.json")


def test_a_contact_with_a_company_names_it_and_links_it_like_the_2018_capture() -> None:
    contact = {
        "id": 22309159,
        "name": "Ivan",
        "responsible_user_id": 2079718,
        "created_by": 2079718,
        "updated_by": 2079718,
        "created_at": 1529344388,
        "updated_at": 1538066975,
        "account_id": 17769199,
        "custom_fields_values": [cf(54665, "Position", "text", {"value": "Developer"}, code="POSITION")],
        "_embedded": {
            "tags": [{"id": 176263, "name": "callback"}],
            "companies": [{"id": 22797025, "name": "ACME"}],
        },
    }
    change = Change(17769199, "contact", "update", 22309159, contact, contact | {"name": "Ivan I."})

    keys = [k for k, _ in encode_alone(change, "update")]

    assert keys == [
        f"contacts[update][0][{name}]"
        for name in (
            "id",
            "name",
            "responsible_user_id",
            "date_create",
            "last_modified",
            "created_user_id",
            "modified_user_id",
            "company_name",
            "linked_company_id",
            "account_id",
            "custom_fields][0][id",
            "custom_fields][0][name",
            "custom_fields][0][values][0][value",
            "custom_fields][0][code",
            "tags][0][id",
            "tags][0][name",
            "created_at",
            "updated_at",
            "type",
        )
    ]


def test_a_contact_delete_matches_the_documentation() -> None:
    change = Change(1, "contact", "delete", 17611273, {"id": 17611273, "name": "x", "is_deleted": True})

    assert encode_alone(change, "delete") == doc_pairs("contacts-delete-contact.doc.json")


TASK = {
    "id": 1564671,
    "entity_id": 15320411,
    "entity_type": "leads",
    "task_type_id": 1,
    "text": "Task text",
    "is_completed": False,
    "account_id": 32720107,
    "created_by": 11087123,
    "updated_by": 11087123,
    "responsible_user_id": 11087123,
    "complete_till": 1759438740,
    "created_at": 1726578449,
    "updated_at": 1726578449,
    "result": [],
}


def test_a_task_add_matches_the_documentation_with_its_date_strings() -> None:
    change = Change(32720107, "task", "add", 1564671, TASK)

    assert encode_alone(change, "add") == doc_pairs("task-add.doc.json")


def test_a_completed_task_update_matches_the_documentation_with_action_close_and_old_text() -> None:
    before = TASK | {
        "id": 1564845,
        "text": "text",
        "complete_till": 1729717140,
        "created_at": 1726579225,
        "updated_at": 1726579225,
    }
    after = before | {"is_completed": True, "updated_at": 1726579269, "result": {"text": "done"}}
    change = Change(32720107, "task", "update", 1564845, after, before)

    assert encode_alone(change, "update") == doc_pairs("task-update-complete.doc.json")


def test_a_task_update_that_does_not_close_it_has_no_action_close() -> None:
    change = Change(32720107, "task", "update", 1564671, TASK | {"text": "Call back"}, TASK)

    pairs = dict(encode_alone(change, "update"))

    assert "task[update][0][action_close]" not in pairs
    assert pairs["task[update][0][old_text]"] == "Task text"
    assert pairs["task[update][0][status]"] == "0"


def test_a_task_delete_carries_only_its_id() -> None:
    change = Change(1, "task", "delete", 1564885, TASK | {"id": 1564885})

    assert encode_alone(change, "delete") == doc_pairs("task-delete.doc.json")


def test_a_catalog_element_add_and_delete_match_the_documentation() -> None:
    element = {
        "id": 347577,
        "catalog_id": 32908,
        "name": "Item 1",
        "created_by": 11087123,
        "updated_by": 11087123,
        "created_at": 1726580883,
        "updated_at": 1726580883,
        "is_deleted": False,
        "custom_fields_values": [
            cf(771934, "SKU", "text", {"value": "1234567534efgd"}, code="SKU"),
            cf(771938, "Price", "price", {"value": 100}, code="PRICE"),
            cf(771936, "Description", "textarea", {"value": "description text"}, code="DESCRIPTION"),
            cf(771944, "Unit", "select", {"value": "kg", "enum_id": 552500}, code="UNIT"),
            cf(771946, "Special price 1", "price", {"value": "80"}, code="SPECIAL_PRICE_1"),
            cf(771948, "Wholesale price", "price", {"value": "50"}, code="WHOLESALE_PRICE"),
        ],
    }
    add = Change(1, "catalog_element", "add", 347577, element)
    delete = Change(1, "catalog_element", "delete", 347577, element | {"is_deleted": True}, element)

    assert encode_alone(add, "add") == doc_pairs("catalogs-add-element.doc.json")
    assert encode_alone(delete, "delete") == doc_pairs("catalogs-delete-element.doc.json")


# --- general rules ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entity", "action", "expected"),
    [
        ("lead", "add", [("add", {"add_lead"})]),
        ("lead", "status", [("status", {"status_lead"}), ("update", {"update_lead"})]),
        ("lead", "responsible", [("responsible", {"responsible_lead"}), ("update", {"update_lead"})]),
        ("lead", "note", [("note", {"note_lead"})]),
        ("company", "restore", [("restore", {"restore_company"})]),
        ("contact", "responsible", [("update", {"update_contact", "responsible_contact"})]),
        ("task", "update", [("update", {"update_task"})]),
        ("catalog_element", "delete", [("delete", {"delete_catalog"})]),
        ("note", "add", []),
        ("lead", "mail_in", []),
    ],
)
def test_each_change_is_routed_to_the_settings_codes_kommo_uses(
    entity: str, action: str, expected: list
) -> None:
    change = Change(1, entity, action, 1, {"id": 1})  # type: ignore[arg-type]

    assert [(r.action, set(r.codes)) for r in routes_for(change)] == expected


def test_companies_go_under_contacts_tasks_under_singular_task_and_elements_under_catalogs() -> None:
    assert section_key(Change(1, "company", "add", 1, {}), "add") == "contacts[add]"
    assert section_key(Change(1, "task", "add", 1, {}), "add") == "task[add]"
    assert section_key(Change(1, "catalog_element", "update", 1, {}), "update") == "catalogs[update]"


def test_every_value_is_a_string_and_the_account_block_can_come_first_or_last() -> None:
    change = Change(
        16503244, "lead", "status", 30267969, STATUS_2021_LEAD, STATUS_2021_LEAD | {"status_id": 1}
    )

    first = webhook_pairs(change, "status", STATUS_2021_ACCOUNT, old_status_id=1)
    last = webhook_pairs(change, "status", STATUS_2021_ACCOUNT, account_position="last", old_status_id=1)

    assert all(isinstance(k, str) and isinstance(v, str) for k, v in first)
    assert [k for k, _ in first[:3]] == ["account[subdomain]", "account[id]", "account[_links][self]"]
    assert last[-3:] == first[:3]
    assert items_only(first) == items_only(last)


def test_a_moved_pipeline_adds_old_pipeline_id_after_pipeline_id() -> None:
    change = Change(1, "lead", "status", 30267969, STATUS_2021_LEAD, STATUS_2021_LEAD | {"pipeline_id": 3})

    keys = [k for k, _ in encode_alone(change, "status", old_status_id=16525555, old_pipeline_id=3)]

    assert keys[keys.index("leads[status][0][pipeline_id]") + 1] == "leads[status][0][old_pipeline_id]"


def test_several_items_are_numbered_within_their_section() -> None:
    one = Item("leads[status]", (("[id]", "1"),))
    two = Item("leads[status]", (("[id]", "2"),))
    other = Item("leads[update]", (("[id]", "1"),))

    pairs = body_pairs([one, other, two], [("account[id]", "9")], account_position="first")

    assert pairs == [
        ("account[id]", "9"),
        ("leads[status][0][id]", "1"),
        ("leads[update][0][id]", "1"),
        ("leads[status][1][id]", "2"),
    ]


def test_form_encoding_follows_php_with_plus_for_spaces_and_percent_for_brackets_and_tilde() -> None:
    body = form_encode([("leads[status][0][name]", "a b/c?~é-_.")])

    assert body == "leads%5Bstatus%5D%5B0%5D%5Bname%5D=a+b%2Fc%3F%7E%C3%A9-_."


def test_checkbox_multiselect_and_object_values_flatten_to_strings() -> None:
    pairs = custom_fields_pairs(
        [
            cf(1, "Agreed", "checkbox", {"value": False}),
            cf(2, "Regions", "multiselect", {"value": "EU", "enum_id": 11}, {"value": "US", "enum_id": 12}),
            cf(3, "Entity", "legal_entity", {"value": {"name": "ACME", "vat_id": 42}}),
        ]
    )

    assert pairs == [
        ("[custom_fields][0][id]", "1"),
        ("[custom_fields][0][name]", "Agreed"),
        ("[custom_fields][0][values][0][value]", "0"),
        ("[custom_fields][1][id]", "2"),
        ("[custom_fields][1][name]", "Regions"),
        ("[custom_fields][1][values][0][value]", "EU"),
        ("[custom_fields][1][values][0][enum]", "11"),
        ("[custom_fields][1][values][1][value]", "US"),
        ("[custom_fields][1][values][1][enum]", "12"),
        ("[custom_fields][2][id]", "3"),
        ("[custom_fields][2][name]", "Entity"),
        ("[custom_fields][2][values][0][value][name]", "ACME"),
        ("[custom_fields][2][values][0][value][vat_id]", "42"),
    ]
