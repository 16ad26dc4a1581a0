"""`/` sends each person where their work is, and so does signing in; 403 and 404 pages in the look."""

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.test import override_settings
from django.urls import NoReverseMatch, path, reverse

from apps.users.models import User
from config.urls import urlpatterns as portal_urlpatterns

pytestmark = pytest.mark.django_db


def person(username: str, group: str | None = None, **extra: object) -> User:
    user = User.objects.create_user(username, password="secret-pass-1", **extra)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


def test_anonymous_visitors_are_sent_to_sign_in(client):
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == reverse("login")


def test_a_manager_lands_on_their_deals(client):
    client.force_login(person("chris", "Manager", kommo_user_id=5001))

    assert client.get("/")["Location"] == reverse("stakeholders:deal_list")


def test_sales_ops_land_in_the_admin(client):
    client.force_login(person("sam", "Sales ops", is_staff=True))

    assert client.get("/")["Location"] == reverse("admin:index")


def test_a_superuser_lands_in_the_admin(client):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "secret-pass-1"))

    assert client.get("/")["Location"] == reverse("admin:index")


def test_the_head_of_sales_lands_on_the_reports_or_the_deals_until_they_exist(client):
    client.force_login(person("hana", "Head of sales"))

    location = client.get("/")["Location"]

    try:
        expected = reverse("reports:index")
    except NoReverseMatch:  # the reports pages are not installed yet
        expected = reverse("stakeholders:deal_list")
    assert location == expected


def test_signing_in_lands_sales_ops_in_the_admin(client):
    person("sam", "Sales ops", is_staff=True)

    response = client.post(reverse("login"), {"username": "sam", "password": "secret-pass-1"})

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")


def test_signing_in_follows_next_when_given(client):
    person("chris", "Manager", kommo_user_id=5001)

    response = client.post(
        reverse("login"), {"username": "chris", "password": "secret-pass-1", "next": "/deals/?page=2"}
    )

    assert response["Location"] == "/deals/?page=2"


def test_the_sign_in_page_is_in_the_admin_look(client):
    response = client.get(reverse("login"))

    assert response.status_code == 200
    assert b"unfold/css/styles.css" in response.content
    assert b'id="login-form"' in response.content


def _forbidden(request):
    raise PermissionDenied("no")


def _missing(request):
    raise Http404("no")


urlpatterns = [path("forbidden/", _forbidden), path("missing/", _missing), *portal_urlpatterns]


@override_settings(ROOT_URLCONF=__name__)
def test_a_403_is_a_styled_page_with_the_portal_navigation(client):
    client.force_login(person("chris", "Manager", kommo_user_id=5001))

    response = client.get("/forbidden/")

    assert response.status_code == 403
    assert b"Not allowed" in response.content
    assert b"unfold/css/styles.css" in response.content
    assert f'href="{reverse("stakeholders:deal_list")}"'.encode() in response.content


def test_a_404_is_a_styled_page(client):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert b"Page not found" in response.content
    assert b"unfold/css/styles.css" in response.content


def test_the_portal_navigation_offers_the_admin_to_staff_only(client):
    client.force_login(person("chris", "Manager", kommo_user_id=5001))
    assert f'href="{reverse("admin:index")}"'.encode() not in client.get("/no-such-page/").content

    client.force_login(person("sam", "Sales ops", is_staff=True))
    assert f'href="{reverse("admin:index")}"'.encode() in client.get("/no-such-page/").content
