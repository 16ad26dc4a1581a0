"""Every transactional test starts from a freshly migrated database, on one process or on xdist's workers:
tests/conftest.py marks each for serialized rollback, so that pytest-django serializes the database at
set-up even when no test of the worker asked for it by its marker."""

import pytest
from django.contrib.auth.models import Group
from pytest_django.fixtures import _get_databases_for_test

from apps.users.models import User

pytestmark = pytest.mark.django_db(transaction=True)  # no serialized_rollback here: the suite adds it


def test_a_transactional_test_is_marked_for_serialized_rollback(request):
    assert _get_databases_for_test(request.node) == (("default",), True)


@pytest.mark.parametrize("turn", [1, 2])
def test_the_groups_of_the_data_migrations_are_there_after_a_transactional_test(turn):
    assert set(Group.objects.values_list("name", flat=True)) >= {choice.value for choice in User.Group}
