import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from apps.stakeholders.models import FieldMapping, FieldMappingValue, Role

pytestmark = pytest.mark.django_db


def test_the_default_roles_exist_with_one_decision_maker():
    roles = list(Role.objects.order_by("sort"))

    assert [role.code for role in roles] == [
        "decision_maker",
        "technical_evangelist",
        "user",
        "lawyer",
        "influencer",
        "blocker",
    ]
    assert [role.label for role in roles if role.is_decision_maker] == ["Decision maker (economic buyer)"]


def test_a_catalog_field_needs_its_catalog(account):
    mapping = FieldMapping(account=account, attribute="approval_status", source="catalog_field", field_id=1)

    with pytest.raises(ValidationError) as caught:
        mapping.full_clean()

    assert "catalog_id" in caught.value.message_dict


def test_a_contact_field_belongs_to_no_catalog(account):
    mapping = FieldMapping(
        account=account, attribute="role", source="contact_field", field_id=1, catalog_id=7
    )

    with pytest.raises(ValidationError) as caught:
        mapping.full_clean()

    assert "catalog_id" in caught.value.message_dict


def test_the_database_refuses_a_catalog_field_without_catalog(account):
    with pytest.raises(IntegrityError), transaction.atomic():
        FieldMapping.objects.create(
            account=account, attribute="last_touch", source="catalog_field", field_id=1
        )


def test_one_mapping_per_account_attribute_and_source(mapped_account):
    duplicate = FieldMapping(
        account=mapped_account, attribute="role", source="catalog_field", field_id=2, catalog_id=7001
    )

    with pytest.raises(ValidationError) as caught:
        duplicate.full_clean()
    assert "attribute" in caught.value.message_dict
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()


def test_the_same_attribute_may_come_from_a_contact_field_and_a_catalog_field(mapped_account):
    sources = set(
        FieldMapping.objects.filter(account=mapped_account, attribute="role").values_list("source", flat=True)
    )

    assert sources == {"contact_field", "catalog_field"}


def test_a_role_option_maps_to_a_role_and_an_approval_option_to_an_approval(mapped_account):
    role_field = FieldMapping.objects.get(account=mapped_account, attribute="role", source="catalog_field")
    approval_field = FieldMapping.objects.get(account=mapped_account, attribute="approval_status")
    touch_field = FieldMapping.objects.get(account=mapped_account, attribute="last_touch")

    with pytest.raises(ValidationError):
        FieldMappingValue(mapping=role_field, enum_id=1, approval="approved").full_clean()
    with pytest.raises(ValidationError):
        FieldMappingValue(mapping=approval_field, enum_id=1, role=Role.objects.first()).full_clean()
    with pytest.raises(ValidationError, match="not a select"):
        FieldMappingValue(mapping=touch_field, enum_id=1, approval="approved").full_clean()
    FieldMappingValue(mapping=approval_field, enum_id=1, approval="approved").clean()


def test_an_option_maps_to_exactly_one_value(mapped_account):
    approval_field = FieldMapping.objects.get(account=mapped_account, attribute="approval_status")

    with pytest.raises(IntegrityError), transaction.atomic():
        FieldMappingValue.objects.create(mapping=approval_field, enum_id=9202, approval="rejected")
    with pytest.raises(IntegrityError), transaction.atomic():
        FieldMappingValue.objects.create(mapping=approval_field, enum_id=1, approval="")


def test_the_expected_close_date_is_a_deal_field_and_a_deal_field_holds_nothing_else(account):
    FieldMapping(account=account, attribute="expected_close", source="lead_field", field_id=1).full_clean()
    for attribute, source in (("expected_close", "contact_field"), ("role", "lead_field")):
        with pytest.raises(ValidationError) as caught:
            FieldMapping(account=account, attribute=attribute, source=source, field_id=1).full_clean()
        assert "source" in caught.value.message_dict
    with pytest.raises(IntegrityError), transaction.atomic():
        FieldMapping.objects.create(
            account=account, attribute="approval_status", source="lead_field", field_id=1
        )
