from unittest import mock

import pytest
from django.urls import reverse

from apps.kommo.models import Catalog, CustomField, CustomFieldEnum
from apps.stakeholders.models import FieldMapping, FieldMappingValue, Role, Stakeholder
from tests.stakeholders.conftest import mirror_recorded_deal

pytestmark = pytest.mark.django_db


def test_roles_are_listed_with_editable_weight_and_sort(admin_client):
    response = admin_client.get(reverse("admin:stakeholders_role_changelist"))

    assert response.status_code == 200
    assert 'name="form-0-weight"' in response.content.decode()


def test_a_roles_approval_expiry_is_edited_in_the_admin(admin_client):
    lawyer = Role.objects.get(code="lawyer")
    url = reverse("admin:stakeholders_role_change", args=[lawyer.pk])
    form = admin_client.get(url).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None}

    response = admin_client.post(url, {**data, "approval_valid_days": 45})

    assert response.status_code == 302, response.content.decode()[:2000]
    lawyer.refresh_from_db()
    assert lawyer.approval_valid_days == 45
    listing = admin_client.get(reverse("admin:stakeholders_role_changelist")).content.decode()
    assert 'name="form-0-approval_valid_days"' in listing


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


def mirrored_field(account, kommo_id, name, *, catalog_id=None, options=()):
    """A custom field (with its options) as the sync mirrors it, for the mapping form's selects."""
    field = CustomField.objects.create(
        account=account,
        kommo_id=kommo_id,
        name=name,
        type="select",
        entity_type=CustomField.EntityType.CATALOGS if catalog_id else CustomField.EntityType.CONTACTS,
        catalog_kommo_id=catalog_id,
    )
    for enum_id, value in options:
        CustomFieldEnum.objects.create(field=field, kommo_id=enum_id, value=value)
    return field


def test_the_mapping_form_names_the_kommo_fields_catalogs_and_options(admin_client, account):
    Catalog.objects.create(account=account, kommo_id=7001, name="Stakeholders")
    mirrored_field(account, 880001, "Role in the purchase", options=[(9001, "Decision maker")])
    mirrored_field(account, 880102, "Approval status", catalog_id=7001, options=[(9101, "Approved")])
    mapping = FieldMapping.objects.create(
        account=account, attribute="role", source="contact_field", field_id=880001
    )
    FieldMappingValue.objects.create(
        mapping=mapping, enum_id=9001, role=Role.objects.get(code="decision_maker")
    )

    add = admin_client.get(reverse("admin:stakeholders_fieldmapping_add")).content.decode()
    change = admin_client.get(
        reverse("admin:stakeholders_fieldmapping_change", args=[mapping.pk])
    ).content.decode()
    listing = admin_client.get(reverse("admin:stakeholders_fieldmapping_changelist")).content.decode()

    assert '<option value="880001">Contacts · Role in the purchase (select)</option>' in add
    assert '<option value="880102">Catalog “Stakeholders” · Approval status (select)</option>' in add
    assert '<option value="7001">Stakeholders</option>' in add
    assert '<option value="9001" selected>Decision maker</option>' in change
    assert "9001 →" not in change  # the option's row is not titled by its Kommo id
    assert "Approved" not in change.split('name="values-__prefix__-enum_id"')[-1].split("</select>")[0]
    assert "Role in the purchase (880001)" in listing
    # The page's title and breadcrumb name the Kommo field, not its id.
    assert "Role ← Contact field “Role in the purchase”" in change
    assert "Contact field 880001" not in change


def test_saving_a_mapping_with_its_options_rederives_the_account(
    admin_client, account, django_capture_on_commit_callbacks
):
    decision_maker = Role.objects.get(code="decision_maker")
    mirrored_field(account, 880001, "Role in the purchase", options=[(9001, "Decision maker")])
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
    mirrored_field(account, 880102, "Approval status", catalog_id=7001)
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
