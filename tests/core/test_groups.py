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
