"""Hostile bodies on the intake API: each is a 400 problem detail, kept as a rejected submission without its
payload; nothing else is stored, and no body whatever gets a 5xx."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.intake import tasks
from apps.intake.models import IntakeSubmission
from apps.intake.parsers import MAX_DEPTH
from apps.intake.serializers import IntakeLeadSerializer
from tests.intake.conftest import submission_body

pytestmark = pytest.mark.django_db
URL = "/api/v1/intake/leads"
Status = IntakeSubmission.Status
hostile = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(autouse=True)
def queued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    ids: list[int] = []
    monkeypatch.setattr(tasks, "intake_submission_enqueue", ids.append)
    return ids


def post_raw(api: Any, body: bytes | str) -> Any:
    return api.generic("POST", URL, body, content_type="application/json")


def assert_refused_and_kept(response: Any, reason: str) -> IntakeSubmission:
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 400
    assert reason in problem["errors"]["body"][0]
    [submission] = IntakeSubmission.objects.all()
    assert (submission.status, submission.payload, submission.normalized) == (Status.REJECTED, None, None)
    assert submission.idempotency_key is None
    assert problem["submission_id"] == submission.pk
    return submission


def test_json_nested_a_hundred_thousand_levels_deep_is_a_400(api, queued) -> None:
    assert_refused_and_kept(post_raw(api, "[" * 100_000), "nested deeper than")
    assert queued == []


def test_json_nested_past_the_limit_but_well_formed_is_a_400(api) -> None:
    body = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    assert_refused_and_kept(post_raw(api, body), f"nested deeper than {MAX_DEPTH} levels")


@pytest.mark.parametrize(
    "body",
    [
        json.dumps(submission_body(deal={"name": "Acme \u0000"})),
        json.dumps(submission_body(extra={"note": "\u0000"})),
        json.dumps(submission_body(**{"k\u0000": 1})),
        json.dumps(submission_body(deal={"name": "Acme \ud800"})),
        json.dumps(submission_body(**{"\udfff": 1})),
    ],
    ids=["nul-in-a-field", "nul-in-an-unknown-field", "nul-in-a-key", "lone-surrogate", "lone-surrogate-key"],
)
def test_nul_and_lone_surrogates_are_a_400(api, queued, body: str) -> None:
    submission = assert_refused_and_kept(post_raw(api, body), "NUL (\\u0000) or a lone surrogate")
    assert submission.raw_body == body  # the escapes are plain ASCII in the body
    assert queued == []


def test_a_nul_byte_in_the_body_is_a_400_and_the_body_is_kept_without_it(api) -> None:
    submission = assert_refused_and_kept(post_raw(api, b'{"deal": \x00}'), "JSON parse error")
    assert submission.raw_body == '{"deal": \ufffd}'


def test_the_same_submission_in_other_scripts_is_accepted(api) -> None:
    body = submission_body(deal={"name": "Сделка 🚀 — 東京"}, company={"name": "Ünïcode GmbH"})

    response = api.post(URL, body, format="json")

    assert response.status_code == 202, response.content
    assert IntakeSubmission.objects.get().payload["deal"]["name"] == "Сделка 🚀 — 東京"


# -- any input ---------------------------------------------------------------------------------------------

text = st.text(alphabet=st.characters(exclude_categories=()), max_size=12)
document = st.recursive(
    text | st.integers() | st.floats(allow_nan=False) | st.booleans() | st.none(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=20,
)
# Bodies shaped like a submission, with any values in its fields, so that validation is reached.
person = st.fixed_dictionaries(
    {"name": document, "emails": document, "phones": document},
    optional={"role": document, "position": document},
)
submission_like = st.fixed_dictionaries(
    {"deal": st.dictionaries(st.sampled_from(["name", "price", "pipeline_id", "tags"]), document)},
    optional={"company": document, "contacts": st.lists(person, max_size=3)},
)


@hostile
@given(body=st.binary(max_size=500))
def test_any_bytes_get_an_answer_below_500(api, body: bytes) -> None:
    assert post_raw(api, body).status_code < 500


@hostile
@given(data=document | submission_like)
def test_any_json_document_gets_an_answer_below_500(api, data: Any) -> None:
    response = post_raw(api, json.dumps(data))  # ensure_ascii: NUL and lone surrogates travel as escapes

    assert response.status_code in (200, 202, 400), response.content


@hostile
@given(data=document | submission_like)
def test_the_serializer_validates_any_document_without_an_exception(source, data: Any) -> None:
    serializer = IntakeLeadSerializer(data=data, context={"source": source})

    if serializer.is_valid():
        assert serializer.validated_data["contacts"]
    else:
        assert serializer.errors
