"""Sign-in lock-out (django-axes): repeated wrong passwords for one user name from one address lock that pair,
on the portal's sign-in and the admin's, and sales ops see and lift the lock in the admin."""

import datetime as dt

import pytest
import time_machine
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from apps.users.models import User

pytestmark = pytest.mark.django_db

ATTACKER = "203.0.113.7"


@pytest.fixture
def manager() -> User:
    user = User.objects.create_user("chris", password="right-pass-1")
    user.groups.add(Group.objects.get(name="Manager"))
    return user


@pytest.fixture
def sales_ops() -> User:
    user = User.objects.create_user("sam", password="right-pass-1", is_staff=True)
    user.groups.add(Group.objects.get(name="Sales ops"))
    return user


def sign_in(client, url: str, username: str, password: str, address: str = ATTACKER):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=address)


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.parametrize("url_name", ["login", "admin:login"])
def test_thirty_wrong_passwords_then_the_right_one_is_refused(client, sales_ops, url_name):
    url = reverse(url_name)
    for _ in range(30):
        sign_in(client, url, "sam", "wrong-pass")

    response = sign_in(client, url, "sam", "right-pass-1")

    assert response.status_code == 429
    assert "Signing in is locked" in response.content.decode()
    assert not signed_in(client)


def test_a_wrong_password_below_the_limit_does_not_lock(client, manager):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(client, reverse("login"), "chris", "wrong-pass")

    response = sign_in(client, reverse("login"), "chris", "right-pass-1")

    assert response.status_code == 302
    assert signed_in(client)


def test_the_lock_is_per_user_name_and_address(client, manager):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, reverse("login"), "chris", "wrong-pass")

    from_elsewhere = sign_in(client, reverse("login"), "chris", "right-pass-1", address="198.51.100.1")

    assert from_elsewhere.status_code == 302
    assert signed_in(client)


def test_the_lock_ends_after_the_cool_off(client, manager):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, reverse("login"), "chris", "wrong-pass")
    assert sign_in(client, reverse("login"), "chris", "right-pass-1").status_code == 429

    with time_machine.travel(timezone.now() + settings.AXES_COOLOFF_TIME + dt.timedelta(minutes=1)):
        response = sign_in(client, reverse("login"), "chris", "right-pass-1")

    assert response.status_code == 302


def test_sales_ops_see_the_lock_in_the_admin_and_lift_it(client, manager, sales_ops):
    for _ in range(30):
        sign_in(client, reverse("login"), "chris", "wrong-pass")
    attempt = AccessAttempt.objects.get(username="chris", ip_address=ATTACKER)
    ops = client.__class__()
    ops.force_login(sales_ops)

    listing = ops.get(reverse("admin:axes_accessattempt_changelist"), {"locked_out": "yes"})
    lifted = ops.post(
        reverse("admin:axes_accessattempt_changelist"),
        {"action": "lift_locks", "_selected_action": [attempt.pk]},
    )
    response = sign_in(client, reverse("login"), "chris", "right-pass-1")

    assert listing.status_code == 200
    assert [row.username for row in listing.context["cl"].result_list] == ["chris"]
    assert lifted.status_code == 302
    assert not AccessAttempt.objects.exists()
    assert response.status_code == 302
    assert signed_in(client)


def test_the_head_of_sales_sees_locks_but_cannot_lift_them(client, manager):
    head = User.objects.create_user("hana", is_staff=True)
    head.groups.add(Group.objects.get(name="Head of sales"))
    client.force_login(head)

    listing = client.get(reverse("admin:axes_accessattempt_changelist"))

    assert listing.status_code == 200
    assert "lift_locks" not in listing.content.decode()
