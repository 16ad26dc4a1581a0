from unittest import mock

import pytest
from django.urls import reverse

from apps.stakeholders.models import FieldMapping, Role, Stakeholder
from tests.stakeholders.conftest import mirror_recorded_deal

pytestmark = pytest.mark.django_db


def test_roles_are_listed_with_editable_weight_and_sort(admin_client):
    response = admin_client.get(reverse("admin:stakeholders_role_changelist"))

    assert response.status_code == 200
    assert 'name="form-0-weight"' in response.content.decode()


def test_stakeholders_are_read_only_and_filterable(admin_client, mapped_account):
    mirror_recorded_deal(mapped_account)
    lawyer = Role.objects.get(code="lawyer")

    listing = admin_client.get(
        reverse("admin:stakeholders_stakeholder_changelist"), {"role__id__exact": lawyer.pk}
    )
    ann = Stakeholder.objects.get(name="Ann Lee")
    detail = admin_client.get(reverse("admin:stakeholders_stakeholder_change", args=[ann.pk]))

    assert [row.name for row in listing.context["cl"].result_list] == [
        "Boris Petrov",
        "External counsel (Hart & Vale)",
    ]
    assert detail.status_code == 200 and 'name="notes"' not in detail.content.decode()
    assert admin_client.get(reverse("admin:stakeholders_stakeholder_add")).status_code == 403


def test_saving_a_mapping_with_its_options_rederives_the_account(
    admin_client, account, django_capture_on_commit_callbacks
):
    decision_maker = Role.objects.get(code="decision_maker")
    form = {
        "account": account.pk,
        "attribute": "role",
        "source": "contact_field",
        "field_id": "880001",
        "catalog_id": "",
        "values-TOTAL_FORMS": "1",
        "values-INITIAL_FORMS": "0",
        "values-0-enum_id": "9001",
        "values-0-role": decision_maker.pk,
        "values-0-approval": "",
    }

    with (
        mock.patch("apps.stakeholders.admin.stakeholders_derive_account.delay") as derive,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = admin_client.post(reverse("admin:stakeholders_fieldmapping_add"), form)

    assert response.status_code == 302
    mapping = FieldMapping.objects.get(account=account)
    assert list(mapping.values.values_list("enum_id", "role")) == [(9001, decision_maker.pk)]
    derive.assert_called_once_with(account.pk)


def test_a_catalog_mapping_without_catalog_is_refused_in_the_form(admin_client, account):
    form = {
        "account": account.pk,
        "attribute": "approval_status",
        "source": "catalog_field",
        "field_id": "880102",
        "catalog_id": "",
        "values-TOTAL_FORMS": "0",
        "values-INITIAL_FORMS": "0",
    }

    response = admin_client.post(reverse("admin:stakeholders_fieldmapping_add"), form)

    assert response.status_code == 200
    assert "A catalog field needs the id of its catalog." in response.content.decode()
    assert not FieldMapping.objects.exists()
