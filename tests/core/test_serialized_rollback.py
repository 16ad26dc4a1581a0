"""Every test starts from a freshly migrated database, on one process or on xdist's workers: tests/conftest.py
marks each transactional test for serialized rollback (so that pytest-django serializes the database at
set-up even when no test of the worker asked for it by its marker) and puts the migrations' content back
right after each one's flush (not only when the next transactional test starts)."""

import pytest
from django.contrib.auth.models import Group
from pytest_django.fixtures import _get_databases_for_test

from apps.users.models import User

TRANSACTIONAL = pytest.mark.django_db(transaction=True)  # no serialized_rollback here: the suite adds it


def portal_groups_are_there() -> bool:
    return set(Group.objects.values_list("name", flat=True)) >= {choice.value for choice in User.Group}


@TRANSACTIONAL
def test_a_transactional_test_is_marked_for_serialized_rollback(request):
    assert _get_databases_for_test(request.node) == (("default",), True)


@TRANSACTIONAL
@pytest.mark.parametrize("turn", [1, 2])
def test_the_groups_of_the_data_migrations_are_there_after_a_transactional_test(turn):
    assert portal_groups_are_there()


def test_a_test_after_a_transactional_one_finds_the_migrations_content_at_once(
    django_db_setup, django_db_blocker
):
    """No database marker: pytest-django runs it after the transactional tests, and no transactional test
    starts in between to put the content back."""
    with django_db_blocker.unblock():
        assert portal_groups_are_there()
