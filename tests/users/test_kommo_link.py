"""Portal users linked to Kommo users: by e-mail when created or signing in, from a select of the mirror
on the user form, and by inviting a manager from the Kommo users list."""

import re

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from apps.kommo.models import KommoAccount, KommoUser
from apps.users.models import User
from tests.factories import KommoAccountFactory, KommoUserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def account() -> KommoAccount:
    return KommoAccountFactory(
        name="Acme", base_url="https://acme.kommo.com", auth_kind=KommoAccount.AuthKind.LONG_LIVED
    )


@pytest.fixture
def chris(account) -> KommoUser:
    return KommoUserFactory(account=account, kommo_id=10500003, name="Chris Novak", email="Chris@Acme.io")


def staff(username: str, group: str) -> User:
    user = User.objects.create_user(username, password="secret-pass-1", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user


def test_a_new_user_is_linked_to_the_kommo_user_with_the_same_email(chris):
    user = User.objects.create_user("chris", email="chris@acme.io")

    assert User.objects.get(pk=user.pk).kommo_user_id == 10500003


def test_no_link_when_no_or_several_kommo_users_match(account, chris):
    KommoUserFactory(account=account, kommo_id=10500099, name="Chris again", email="chris@acme.io")

    ambiguous = User.objects.create_user("chris", email="chris@acme.io")
    unknown = User.objects.create_user("nobody", email="nobody@acme.io")

    assert User.objects.get(pk=ambiguous.pk).kommo_user_id is None
    assert User.objects.get(pk=unknown.pk).kommo_user_id is None


def test_signing_in_links_a_user_the_mirror_now_knows(client, account):
    user = User.objects.create_user("dana", email="dana@acme.io", password="secret-pass-1")
    assert User.objects.get(pk=user.pk).kommo_user_id is None
    KommoUserFactory(account=account, kommo_id=10500004, name="Dana Whitfield", email="dana@acme.io")

    client.post(reverse("login"), {"username": "dana", "password": "secret-pass-1"})

    assert User.objects.get(pk=user.pk).kommo_user_id == 10500004


def test_the_user_form_offers_the_mirrored_kommo_users_by_name(client, chris):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "secret-pass-1"))
    person = User.objects.create_user("maria")

    page = client.get(reverse("admin:users_user_change", args=[person.pk])).content.decode()

    assert re.search(r'<select[^>]*name="kommo_user_id"', page)
    assert '<option value="10500003">Chris Novak &lt;Chris@Acme.io&gt; · Acme</option>' in page


def test_choosing_a_kommo_user_on_the_user_form_links_it(client, chris):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "secret-pass-1"))
    person = User.objects.create_user("maria")
    page = client.get(reverse("admin:users_user_change", args=[person.pk]))
    data = {
        key: value
        for key, value in page.context["adminform"].form.initial.items()
        if value is not None and key not in {"groups", "user_permissions", "password"}
    }
    data.update({"username": "maria", "kommo_user_id": "10500003", "date_joined_0": "2026-12-01"})
    data.update({"date_joined_1": "10:00:00", "is_active": "on"})

    response = client.post(reverse("admin:users_user_change", args=[person.pk]), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert User.objects.get(pk=person.pk).kommo_user_id == 10500003


def test_sales_ops_invite_a_manager_who_sets_a_password_and_signs_in(client, chris):
    client.force_login(staff("sam", "Sales ops"))

    response = client.post(
        reverse("admin:kommo_kommouser_changelist"),
        {"action": "invite_manager", "_selected_action": [chris.pk]},
        follow=True,
    )
    text = " ".join(str(message) for message in response.context["messages"])
    link = re.search(r"http://testserver(/accounts/password/\S+/)", text).group(1)
    invited = User.objects.get(kommo_user_id=10500003)
    newcomer = Client()
    form = newcomer.get(link, follow=True)
    newcomer.post(
        form.redirect_chain[-1][0], {"new_password1": "a-long-pass-42", "new_password2": "a-long-pass-42"}
    )
    signed_in = newcomer.post(reverse("login"), {"username": invited.username, "password": "a-long-pass-42"})
    used_again = Client().get(link, follow=True)

    assert invited.username == "chris" and invited.email == "Chris@Acme.io"
    assert invited.in_group(User.Group.MANAGER) and not invited.is_staff
    assert signed_in.status_code == 302 and signed_in["Location"] == reverse("stakeholders:deal_list")
    assert not used_again.context["validlink"]
    # The users list says who the newcomer is: a manager, working as the Kommo user by name.
    listing = client.get(reverse("admin:users_user_changelist"), {"q": "chris"})
    assert invited.pk in [row.pk for row in listing.context["cl"].result_list]
    html = listing.content.decode()
    assert '<td class="field-job' in html and ">Manager</td>" in html and "Chris Novak" in html


def test_inviting_an_already_invited_kommo_user_creates_no_second_user(client, chris):
    client.force_login(staff("sam", "Sales ops"))
    for _ in range(2):
        client.post(
            reverse("admin:kommo_kommouser_changelist"),
            {"action": "invite_manager", "_selected_action": [chris.pk]},
        )

    assert User.objects.filter(kommo_user_id=10500003).count() == 1


def test_the_head_of_sales_cannot_invite(client, chris):
    client.force_login(staff("hana", "Head of sales"))

    page = client.get(reverse("admin:kommo_kommouser_changelist")).content.decode()

    assert "invite_manager" not in page
