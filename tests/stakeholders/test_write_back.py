"""A person's change to a stakeholder is written where Kommo keeps it, and the mirror follows Kommo (the
fake Kommo, holding the recorded contacts and Stakeholders elements)."""

import datetime as dt
from decimal import Decimal

import pytest
import responses
import time_machine

from apps.kommo.exceptions import KommoValidationError
from apps.kommo.provenance import MirrorSource, Provenance
from apps.stakeholders.models import FieldMappingValue, Role, Stakeholder
from apps.stakeholders.services import (
    StakeholderChange,
    StakeholderNeedsElement,
    StakeholderWriteError,
    stakeholder_update_in_kommo,
)
from tests.kommo.payloads import payload
from tests.stakeholders.conftest import mirror_recorded_deal

pytestmark = pytest.mark.django_db
ELEMENTS = r"/api/v4/catalogs/\d+/elements"  # the fake's route
BY_MANAGER = Provenance(MirrorSource.MANAGER)  # a change made on the deal's stakeholder page


def change_of(stakeholder: Stakeholder, **changes) -> StakeholderChange:
    current = {
        "role": stakeholder.role,
        "approval_status": stakeholder.approval_status,
        "last_touch": stakeholder.last_touch,
    }
    return StakeholderChange(**{**current, **changes})


@pytest.fixture
def recorded_deal(mapped_account):
    mirror_recorded_deal(mapped_account)
    return {
        row.name: row for row in Stakeholder.objects.select_related("account", "contact", "catalog_element")
    }


def test_an_approval_is_written_to_the_deals_catalog_element(recorded_deal, kommo_client, kommo):
    ann = recorded_deal["Ann Lee"]
    decided = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)

    with time_machine.travel(decided, tick=False):
        written = stakeholder_update_in_kommo(
            stakeholder=ann,
            change=change_of(ann, approval_status="rejected"),
            provenance=BY_MANAGER,
            client=kommo_client,
        )

    assert written is True
    # A decision is a touch: the last touch is written with it (nothing maps the decision's day here).
    assert kommo.bodies("PATCH", "/api/v4/catalogs/7001/elements") == [
        [
            {
                "id": 7101,
                "custom_fields_values": [
                    {"field_id": 880102, "values": [{"enum_id": 9203}]},
                    {"field_id": 880103, "values": [{"value": int(decided.timestamp())}]},
                ],
            }
        ]
    ]
    assert Stakeholder.objects.get(pk=ann.pk).approval_status == "rejected"


def test_a_last_touch_is_written_as_a_unix_timestamp(recorded_deal, kommo_client, kommo):
    ann = recorded_deal["Ann Lee"]
    touched = dt.datetime(2024, 7, 1, tzinfo=dt.UTC)

    stakeholder_update_in_kommo(
        stakeholder=ann, change=change_of(ann, last_touch=touched), provenance=BY_MANAGER, client=kommo_client
    )

    [body] = kommo.bodies("PATCH", "/api/v4/catalogs/7001/elements")
    assert body[0]["custom_fields_values"] == [
        {"field_id": 880103, "values": [{"value": int(touched.timestamp())}]}
    ]
    assert Stakeholder.objects.get(pk=ann.pk).last_touch == touched


def test_a_role_of_a_contact_without_element_is_written_to_the_contact_and_read_back(
    recorded_deal, kommo_client, kommo
):
    chen = recorded_deal["Chen Wu"]
    blocker = Role.objects.get(code="blocker")

    stakeholder_update_in_kommo(
        stakeholder=chen, change=change_of(chen, role=blocker), provenance=BY_MANAGER, client=kommo_client
    )

    assert kommo.bodies("PATCH", "/api/v4/contacts") == [
        [{"id": 6003, "custom_fields_values": [{"field_id": 880001, "values": [{"enum_id": 9006}]}]}]
    ]
    assert [call.split("?")[0] for call in kommo.calls if call.startswith("GET")] == [
        "GET /api/v4/contacts/6003"
    ]
    assert Stakeholder.objects.get(pk=chen.pk).role == blocker


def test_an_attribute_kommo_has_no_field_for_is_refused_before_any_call(recorded_deal, kommo_client):
    ann = recorded_deal["Ann Lee"]  # nothing maps the objection weight

    with (
        responses.RequestsMock(),
        pytest.raises(StakeholderWriteError, match="no field for the objection weight of Ann Lee"),
    ):
        stakeholder_update_in_kommo(
            stakeholder=ann,
            change=change_of(ann, objection_weight=Decimal("2.5")),
            provenance=BY_MANAGER,
            client=kommo_client,
        )


def test_an_approval_only_the_catalog_holds_asks_for_the_persons_element_before_any_call(
    recorded_deal, kommo_client
):
    chen = recorded_deal["Chen Wu"]  # no catalog element, and contacts map only the role

    with (
        responses.RequestsMock(),
        pytest.raises(StakeholderNeedsElement, match="Chen Wu has no Stakeholders element on this deal"),
    ):
        stakeholder_update_in_kommo(
            stakeholder=chen,
            change=change_of(chen, approval_status="approved"),
            provenance=BY_MANAGER,
            client=kommo_client,
        )


def test_nothing_is_written_when_nothing_changed(recorded_deal, kommo_client):
    ann = recorded_deal["Ann Lee"]

    with responses.RequestsMock():
        assert (
            stakeholder_update_in_kommo(
                stakeholder=ann, change=change_of(ann), provenance=BY_MANAGER, client=kommo_client
            )
            is False
        )


def test_kommos_refusal_is_reported_and_the_stakeholder_is_unchanged(recorded_deal, kommo_client, kommo):
    ann = recorded_deal["Ann Lee"]
    kommo.answer_next(ELEMENTS, 400, payload("error-validation.json"))

    with pytest.raises(StakeholderWriteError, match="Kommo refused the change") as caught:
        stakeholder_update_in_kommo(
            stakeholder=ann,
            change=change_of(ann, approval_status="pending"),
            provenance=BY_MANAGER,
            client=kommo_client,
        )

    assert isinstance(caught.value.__cause__, KommoValidationError)
    assert caught.value.permanent is True
    assert Stakeholder.objects.get(pk=ann.pk).approval_status == "approved"


def test_kommo_being_unavailable_is_reported_as_worth_retrying(recorded_deal, kommo_client, kommo):
    ann = recorded_deal["Ann Lee"]
    kommo.failures[ELEMENTS] = (500, payload("error-500.json"))

    with pytest.raises(StakeholderWriteError, match="Kommo could not take the change now") as caught:
        stakeholder_update_in_kommo(
            stakeholder=ann,
            change=change_of(ann, approval_status="pending"),
            provenance=BY_MANAGER,
            client=kommo_client,
        )

    assert caught.value.permanent is False
    assert Stakeholder.objects.get(pk=ann.pk).approval_status == "approved"


def test_a_role_the_kommo_field_has_no_option_for_is_refused_before_any_call(recorded_deal, kommo_client):
    ann = recorded_deal["Ann Lee"]
    blocker = Role.objects.get(code="blocker")
    FieldMappingValue.objects.filter(mapping__source="catalog_field", role=blocker).delete()

    with (
        responses.RequestsMock(),
        pytest.raises(StakeholderWriteError, match="Kommo has no option for “Blocker”"),
    ):
        stakeholder_update_in_kommo(
            stakeholder=ann, change=change_of(ann, role=blocker), provenance=BY_MANAGER, client=kommo_client
        )
