"""The webhook parser: every quirk of Kommo's wire format (API.md §12), and properties that hold for any
body: the order of keys never matters, and encoding a tree then parsing it gives the tree back."""

from __future__ import annotations

import datetime as dt
import json
import random
from urllib.parse import quote_plus

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from apps.kommo.webhooks.dispatch import plan_items
from apps.kommo.webhooks.parser import (
    CACHED_LAYOUT_BODY_BYTES,
    DP_FIELDS,
    Kind,
    Routing,
    WebhookParseError,
    _checked,
    _key_parts,
    _routing,
    _unquote,
    decode,
    decode_form,
    encode_form,
    parse,
    route,
    to_int,
)
from tests.kommo.webhook_support import FOLDER, body_names, recording


def one(name: str):
    [item] = parse(recording(name).body).items
    return item


def test_a_recorded_status_change_gives_the_move_with_legacy_names_as_strings() -> None:
    item = one("leads-status.form.txt")

    assert item.event == ("lead", "status")
    assert item.id == 30267969
    assert (item.number("old_status_id"), item.number("status_id")) == (16525555, 16525558)
    assert item.fields["date_create"] == "1615894221"
    assert item.moment("last_modified") == dt.datetime(2021, 3, 17, 12, 57, 26, tzinfo=dt.UTC)
    assert item.fields["tags"]["0"] == {"id": "482205", "name": "Sasa"}


def test_a_date_custom_field_has_a_bare_timestamp_and_a_select_its_label_and_enum_id() -> None:
    fields = {field.id: field for field in one("leads-status.form.txt").custom_fields}

    assert [(v.value, v.enum_id) for v in fields[481305].values] == [("1615845600", None)]
    assert [(v.value, v.enum_id) for v in fields[496779].values] == [("Zghirieturi minore", 959761)]


def test_a_radiobutton_value_sent_as_one_object_reads_like_a_list_of_one() -> None:
    item = one("contacts-add-contact.doc.form.txt")
    fields = {field.name: field for field in item.custom_fields}

    assert [(v.value, v.enum_id) for v in fields["Any radiobutton"].values] == [("2", 566642)]
    assert fields["Phone"].code == "PHONE"


def test_a_company_arrives_under_contacts_and_is_told_apart_by_its_type() -> None:
    assert one("contacts-add-company.doc.form.txt").event == ("company", "add")
    assert one("contacts-add-contact.doc.form.txt").event == ("contact", "add")
    assert one("contacts-delete-company.sandbox.form.txt").event == ("company", "delete")


def test_tasks_come_under_the_singular_section_and_catalog_elements_under_catalogs() -> None:
    assert one("task-add.doc.form.txt").event == ("task", "add")
    element = one("catalogs-add-element.doc.form.txt")
    assert element.event == ("catalog_element", "add")
    assert (element.id, element.number("catalog_id")) == (347577, 32908)


def test_an_accepted_incoming_lead_names_the_leads_it_became() -> None:
    item = one("unsorted-delete-accept.doc.form.txt")

    assert item.event == ("unsorted", "accept")
    assert item.result_ids("leads") == (15258873,)
    assert one("unsorted-delete-decline.constructed.form.txt").event == ("unsorted", "decline")


def test_a_note_is_read_from_its_nested_note_block() -> None:
    item = one("leads-note-text.doc.form.txt")

    assert item.event == ("lead", "note")
    assert (item.id, item.number("element_id")) == (4600471, 15320411)
    assert one("contacts-note.sandbox.form.txt").event == ("contact", "note")
    assert one("contacts-note-company.sandbox.form.txt").event == ("company", "note")


def test_messages_and_talks_are_items_without_a_numeric_id() -> None:
    assert one("message-add.doc.form.txt").event == ("message", "add")
    talk = one("talk-add.doc.form.txt")
    assert talk.event == ("talk", "add")
    assert talk.number("talk_id") == 191


def test_the_account_block_is_read_first_or_last() -> None:
    first = parse(recording("leads-add.curl.txt").body)
    last = parse(recording("leads-status.form.txt").body)

    assert (first.account_id, first.subdomain) == (32427762, "etesttask")
    assert (last.account_id, last.subdomain) == (16503244, "irestoremoldova")


def test_several_items_in_one_body_come_out_in_section_and_index_order() -> None:
    body = parse(recording("leads-status-several-items.sandbox.form.txt").body)

    assert [(item.event, item.id) for item in body.items] == [
        (("contact", "update"), 7202),
        (("lead", "status"), 504),
        (("lead", "status"), 505),
    ]


def test_a_digital_pipeline_hook_is_told_apart_from_an_account_webhook() -> None:
    dp = recording("dp-leads-status.form.txt")

    assert route(dp.body).kind == Kind.DIGITAL_PIPELINE
    assert parse(dp.body).kind == Kind.DIGITAL_PIPELINE
    assert route(recording("leads-delete.doc.form.txt").body).kind == Kind.GENERAL
    assert route(recording("dp-leads-add.sandbox.form.txt").body).events == ("leads[add]",)


def test_routing_reads_the_account_and_sections_without_parsing_values() -> None:
    routing = route(recording("leads-status-several-items.sandbox.form.txt").body)

    assert (routing.account_id, routing.subdomain) == ("31000001", "acme")
    assert routing.events == ("contacts[update]", "leads[status]")
    assert routing.kind == Kind.GENERAL


def test_a_json_body_reads_like_the_same_body_form_encoded() -> None:
    rendering = json.loads((FOLDER / "leads-status.doc.json").read_bytes())
    account = {"subdomain": "example", "id": "32720107", "_links": {"self": "https://example.kommo.com"}}
    as_json = json.dumps({"account": account, **rendering}).encode()

    assert parse(as_json, "application/json") == parse(recording("leads-status.doc.form.txt").body)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "no entities"),
        (b"hello", "not a section of entities"),
        (b"leads[status]=1", "not a list of entities"),
        (b"leads[add][0][id]=1&leads[add][0][id]=2", "given twice"),
        (b"leads[add][0][id]=1&leads[add][0][id][x]=2", "both a value and a parent"),
        (b"leads[add][0][name]=%FF%FE", "not UTF-8"),
        (b"\xff\xfe=1", "not UTF-8"),
        (b"a" + b"[b]" * 5000 + b"=1", "deeper"),
        (b"{", "invalid JSON"),
        (b'{"leads": [1, 2]}', "not a list of entities"),
    ],
)
def test_a_body_that_is_not_a_kommo_webhook_is_refused_with_the_reason(body: bytes, reason: str) -> None:
    with pytest.raises(WebhookParseError, match=reason):
        parse(body)


def test_a_body_with_more_keys_than_allowed_is_refused() -> None:
    with pytest.raises(WebhookParseError, match="Max number of fields"):
        decode_form(b"&".join(b"k%d=v" % i for i in range(20_001)))


# -- properties -------------------------------------------------------------------------------------------


def reordered(body: bytes, seed: object) -> bytes:
    pairs = body.split(b"&")
    random.Random(seed).shuffle(pairs)  # noqa: S311 - a reproducible order, not a secret
    return b"&".join(pairs)


@pytest.mark.parametrize("name", body_names())
def test_the_order_of_keys_never_changes_what_a_recorded_body_means(name: str) -> None:
    body = recording(name).body.strip()
    shuffled = reordered(body, name)

    assert parse(shuffled) == parse(body)
    assert route(shuffled) == route(body)


# NUL is refused wherever it appears (no text column can store it): tested on its own below.
name_text = st.text(
    alphabet=st.characters(blacklist_characters="[]\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=8,
)
leaf_text = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12
)
trees = st.recursive(
    leaf_text,
    lambda children: st.dictionaries(name_text, children, min_size=1, max_size=4),
    max_leaves=20,
)
bodies = st.dictionaries(name_text, trees, min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(tree=bodies, seed=st.integers())
def test_any_tree_survives_encoding_and_decoding_in_any_key_order(tree: dict, seed: int) -> None:
    body = encode_form(tree)

    assert decode_form(body) == tree
    assert decode_form(reordered(body, seed)) == tree


lead_fields = st.fixed_dictionaries(
    {"id": st.integers(1, 10**9).map(str), "status_id": st.integers(1, 10**8).map(str)},
    optional={"name": leaf_text, "old_status_id": st.integers(1, 10**8).map(str), "price": leaf_text},
)


@settings(max_examples=100, deadline=None)
@given(
    leads=st.lists(lead_fields, min_size=1, max_size=5),
    action=st.sampled_from(["add", "update", "status", "delete", "restore"]),
    account_first=st.booleans(),
    seed=st.integers(),
)
def test_any_webhook_body_parses_to_the_same_items_whatever_the_order(
    leads: list[dict[str, str]], action: str, account_first: bool, seed: int
) -> None:
    account = {"account": {"subdomain": "acme", "id": "31000001"}}
    entities = {"leads": {action: leads}}
    tree = {**account, **entities} if account_first else {**entities, **account}
    body = encode_form(tree)

    parsed = parse(reordered(body, seed))

    assert parsed == parse(body)
    assert [item.id for item in parsed.items] == [int(lead["id"]) for lead in leads]
    assert [dict(item.fields) for item in parsed.items] == leads
    assert parsed.account_id == 31000001


def test_php_urlencode_is_what_encoding_produces() -> None:
    body = encode_form({"leads": {"add": [{"name": "a b~c/é"}]}})

    assert (
        body
        == b"leads%5Badd%5D%5B0%5D%5Bname%5D=" + quote_plus("a b~c/é", safe="").replace("~", "%7E").encode()
    )
    assert decode(body) == {"leads": {"add": {"0": {"name": "a b~c/é"}}}}


# -- hostile input: nothing but WebhookParseError ---------------------------------------------------------

HOSTILE = FOLDER / "hostile"


def hostile_names() -> list[str]:
    return sorted(path.name for path in HOSTILE.iterdir() if path.suffix in {".txt", ".json"})


def content_type_of(name: str) -> str:
    return "application/json" if name.endswith(".json") else "application/x-www-form-urlencoded"


def read_fully(body: bytes, content_type: str) -> None:
    """Everything the worker reads of a body: the routing, the items, their plan and custom fields."""
    route(body, content_type)
    items = parse(body, content_type).items
    plan_items(items)
    for item in items:
        item.custom_fields  # noqa: B018 - read for the exceptions it may raise
        item.result_ids("leads")
        item.moment("last_modified")


@pytest.mark.parametrize("name", hostile_names())
def test_a_recorded_hostile_body_is_refused_with_a_parse_error_and_nothing_else(name: str) -> None:
    with pytest.raises(WebhookParseError):
        read_fully((HOSTILE / name).read_bytes(), content_type_of(name))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"leads[add][0][id]=" + b"9" * 5000, "5000 digits"),
        (b"leads[add][0][id]=9223372036854775808", "beyond 64 bits"),
        (b"leads%00[add][0][id]=1", "NUL character in a key"),
        (b"leads[add][0][id]=1&leads[add][0][name]=%00", "NUL character in a value"),
        (b'{"leads": {"add": [{"id": "1", "name": "\\ud800"}]}}', "lone surrogate"),
        (b'{"leads": {"add": [{"id": "1", "na\\u0000me": "x"}]}}', "NUL character in a key"),
        (b'{"a": ' * 5000 + b"1" + b"}" * 5000, "nested too deeply"),
    ],
)
def test_malformed_values_are_refused_with_the_reason(body: bytes, reason: str) -> None:
    with pytest.raises(WebhookParseError, match=reason):
        read_fully(body, "application/json" if body.startswith(b"{") else "application/x-www-form-urlencoded")


def test_numbers_are_read_as_ascii_digits_within_64_bits() -> None:
    assert [to_int(text) for text in ["42", " -7 ", "0009", "", "abc", "--5", "²", "1e3", "1.5"]] == [
        42,
        -7,
        9,
        None,
        None,
        None,
        None,
        None,
        None,
    ]
    assert to_int("0" * 5000 + "1") == 1
    assert to_int(str(2**63 - 1)) == 2**63 - 1


@settings(max_examples=400, deadline=None)
@given(
    body=st.binary(max_size=400),
    content_type=st.sampled_from(["application/x-www-form-urlencoded", "application/json", ""]),
)
def test_any_bytes_raise_nothing_but_a_parse_error(body: bytes, content_type: str) -> None:
    try:
        read_fully(body, content_type)
    except WebhookParseError:
        pass


# Keys shaped like Kommo's, so that generated bodies reach the items, the plan and the custom fields.
wire_keys = st.builds(
    "{}[{}][{}][{}]".format,
    st.sampled_from(["leads", "contacts", "catalogs", "unsorted", "task", "account", "x"]),
    st.sampled_from(["add", "status", "update", "delete", "note", "accept"]),
    st.one_of(st.integers(0, 3).map(str), st.text(max_size=3)),
    st.sampled_from(
        [
            "id",
            "status_id",
            "old_status_id",
            "pipeline_id",
            "catalog_id",
            "last_modified",
            "type",
            "custom_fields][0][values][0][enum",
            "custom_fields][0][id",
            "accept_result][leads][0",
            "note][element_type",
            "",
        ]
    ),
)
numbers = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.integers(4000, 6000).map(lambda digits: "9" * digits),
    st.floats().map(str),
)
form_pairs = st.lists(
    st.tuples(st.one_of(wire_keys, st.text(max_size=20)), st.one_of(numbers, st.text(max_size=20))),
    max_size=12,
)


@settings(max_examples=400, deadline=None)
@given(pairs=form_pairs)
def test_any_form_encoded_keys_and_values_raise_nothing_but_a_parse_error(pairs) -> None:
    body = "&".join(f"{quote_plus(key)}={quote_plus(value)}" for key, value in pairs).encode(
        "utf-8", "surrogatepass"
    )
    try:
        read_fully(body, "application/x-www-form-urlencoded")
    except WebhookParseError:
        pass


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10), numbers),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None)
@given(tree=st.dictionaries(st.sampled_from(["leads", "contacts", "account", "x"]), json_values, max_size=3))
def test_any_json_body_raises_nothing_but_a_parse_error(tree) -> None:
    body = json.dumps(tree).encode()
    try:
        read_fully(body, "application/json")
    except WebhookParseError:
        pass


# -- routing by the body's layout ---------------------------------------------------------------------------


def routed_pair_by_pair(body: bytes) -> Routing | str:
    """What route() answered for a form body before it remembered layouts — each pair read in order — or the
    reason it refused it."""
    account: dict[str, str] = {}
    events: set[str] = set()
    general = False
    try:
        for piece in body.split(b"&"):
            raw_key, _, raw_value = piece.partition(b"=")
            parts = _key_parts(raw_key)
            if parts[0] == "account":
                if len(parts) == 2:
                    account[parts[1]] = _checked(_unquote(raw_value), "value")
                else:
                    general = True
                continue
            if len(parts) >= 2:
                events.add(f"{parts[0]}[{parts[1]}]")
            if len(parts) < 4 or parts[0] != "leads" or parts[3] not in DP_FIELDS:
                general = True
    except WebhookParseError as exc:
        return str(exc)
    return _routing(account, events, general)


def routed(body: bytes) -> Routing | str:
    try:
        return route(body)
    except WebhookParseError as exc:
        return str(exc)


def form_bodies() -> list[bytes]:
    recorded = [recording(name).body.strip() for name in body_names()]
    hostile = [(HOSTILE / name).read_bytes() for name in hostile_names() if name.endswith(".txt")]
    return recorded + [reordered(body, 0) for body in recorded] + hostile


def test_routing_by_layout_says_what_reading_each_pair_said_of_every_recorded_body() -> None:
    for body in form_bodies():
        assert routed(body) == routed_pair_by_pair(body), body[:80]
        assert routed(body) == routed_pair_by_pair(body), body[:80]  # the layout remembered


def test_a_remembered_layout_reads_each_bodys_own_account_values() -> None:
    body = recording("leads-status.form.txt").body.strip()
    other = body.replace(b"account%5Bsubdomain%5D=irestoremoldova", b"account%5Bsubdomain%5D=other")
    nul = body.replace(b"account%5Bsubdomain%5D=irestoremoldova", b"account%5Bsubdomain%5D=a%00b")
    assert other != body and nul != body

    assert route(body).subdomain == "irestoremoldova"
    assert route(other).subdomain == "other"
    with pytest.raises(WebhookParseError, match="NUL character in a value"):
        route(nul)


def test_a_body_with_several_faults_is_refused_for_the_first_pair_that_has_one() -> None:
    body = b"account%5Bid%5D=%00&leads%00=1"

    assert routed(body) == routed_pair_by_pair(body) == "NUL character in a value"
    assert routed(body[::-1]) == routed_pair_by_pair(body[::-1])


def test_a_long_body_is_routed_as_any_other() -> None:
    body = recording("leads-status.form.txt").body.strip()
    many = b"&".join([body.replace(b"[0]", f"[{index}]".encode()) for index in range(10)])
    assert len(many) > CACHED_LAYOUT_BODY_BYTES

    assert routed(many) == routed_pair_by_pair(many)


@settings(max_examples=300, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(
            st.one_of(
                wire_keys, st.sampled_from(["account[id]", "account[subdomain]"]), st.text(max_size=20)
            ),
            st.one_of(numbers, st.text(max_size=20)),
        ),
        max_size=12,
    )
)
def test_any_form_body_is_routed_by_its_layout_as_pair_by_pair(pairs) -> None:
    body = "&".join(f"{quote_plus(key)}={quote_plus(value)}" for key, value in pairs).encode(
        "utf-8", "surrogatepass"
    )

    assert routed(body) == routed_pair_by_pair(body)
    assert routed(body) == routed_pair_by_pair(body)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300))
def test_any_bytes_are_routed_by_their_layout_as_pair_by_pair(body: bytes) -> None:
    assume(body.lstrip()[:1] != b"{")  # read as JSON
    assert routed(body) == routed_pair_by_pair(body)
