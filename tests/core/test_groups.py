import pytest
from django.contrib.auth.models import Group

from apps.users.models import User


@pytest.mark.django_db
def test_the_three_portal_groups_exist_after_migrating():
    assert set(Group.objects.values_list("name", flat=True)) >= {choice.value for choice in User.Group}


@pytest.mark.django_db
def test_a_user_knows_its_group():
    manager = User.objects.create_user("maria", kommo_user_id=5001)
    manager.groups.add(Group.objects.get(name="Manager"))

    assert manager.in_group(User.Group.MANAGER)
    assert not manager.in_group(User.Group.SALES_OPS)


@pytest.mark.django_db
def test_a_user_is_in_any_of_several_groups_when_in_one_of_them():
    head = User.objects.create_user("hana")
    head.groups.add(Group.objects.get(name="Head of sales"))

    assert head.in_group(User.Group.SALES_OPS, User.Group.HEAD_OF_SALES)
    assert not head.in_group(User.Group.SALES_OPS, User.Group.MANAGER)
