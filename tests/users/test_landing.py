"""`/` sends each person where their work is, and so does signing in; 403 and 404 pages in the look."""

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.test import override_settings
from django.urls import path, reverse

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


def test_a_manager_opening_the_admin_is_sent_to_their_deals_with_a_word_why(client):
    """Not to the admin's sign-in page, which asks someone already signed in to sign in again."""
    client.force_login(person("chris", "Manager", kommo_user_id=5001))

    response = client.get(reverse("admin:index"), follow=True)

    assert response.redirect_chain[-1][0] == reverse("stakeholders:deal_list")
    assert "The admin is for sales ops and the head of sales" in response.content.decode()


def test_the_admin_sign_in_page_still_signs_in_someone_signed_out(client):
    assert client.get(reverse("admin:login")).status_code == 200


def test_sales_ops_land_in_the_admin(client):
    client.force_login(person("sam", "Sales ops", is_staff=True))

    assert client.get("/")["Location"] == reverse("admin:index")


def test_a_superuser_lands_in_the_admin(client):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "secret-pass-1"))

    assert client.get("/")["Location"] == reverse("admin:index")


def test_the_head_of_sales_lands_on_the_reports(client):
    client.force_login(person("hana", "Head of sales"))

    assert client.get("/")["Location"] == reverse("reports:index")


def test_signing_in_lands_sales_ops_in_the_admin(client):
    person("sam", "Sales ops", is_staff=True)

    response = client.post(reverse("login"), {"username": "sam", "password": "secret-pass-1"})

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")


@pytest.mark.parametrize(
    ("username", "group", "landing"),
    [("sam", "Sales ops", "admin:index"), ("hana", "Head of sales", "reports:index")],
)
def test_signing_in_on_the_admin_page_without_next_lands_on_the_work(client, username, group, landing):
    """The admin's sign-in page reached directly posts no `next`: the person must not land on Django's
    default /accounts/profile/ (a 404 here) but where their work is."""
    person(username, group, is_staff=True)

    response = client.post(
        reverse("admin:login"), {"username": username, "password": "secret-pass-1"}, follow=True
    )

    assert response.redirect_chain[-1][0] == reverse(landing)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("group", "subheader"),
    [("Sales ops", "Sales ops"), ("Head of sales", "Head of sales")],
)
def test_the_admin_names_the_job_of_the_person_signed_in(client, group, subheader):
    client.force_login(person("pat", group, is_staff=True))

    response = client.get(reverse("admin:index"))

    assert response.context["site_subheader"] == subheader


def test_the_admin_sidebar_lists_the_forecast_categories_under_reports(client):
    client.force_login(person("hana", "Head of sales", is_staff=True))

    response = client.get(reverse("admin:index"))

    reports = next(group for group in response.context["sidebar_navigation"] if group["title"] == "Reports")
    links = {item["link"] for item in reports["items"]}
    assert reverse("admin:reports_forecastcategory_changelist") in links


def test_the_admin_front_page_lists_the_pages_by_job_as_the_sidebar_does(client):
    """Not Django's list of apps by their code names ("Axes", "Authentication and Authorization")."""
    client.force_login(person("sam", "Sales ops", is_staff=True))

    response = client.get(reverse("admin:index"))
    front = response.content.decode().split('id="admin-job-groups"')[1]

    titles = [group["title"] for group in response.context["sidebar_navigation"]]
    assert titles[:3] == ["Portal", "Kommo accounts & sync", "Stakeholders & roles"]
    positions = [front.index(f">{title.replace('&', '&amp;')}</h2>") for title in titles]
    assert positions == sorted(positions)
    assert reverse("admin:axes_accessattempt_changelist") in front and "Login failures" in front
    assert "Axes" not in front and "Authentication and Authorization" not in front


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


@pytest.mark.parametrize("path", ["/admin/login/", "/accounts/login/"])
def test_pages_name_the_favicon_and_favicon_ico_leads_to_it(client, path):
    """Without it every page's visit logged a 404 for /favicon.ico in the browser's console."""
    icon = "/static/core/favicon.svg"

    assert f'href="{icon}"'.encode() in client.get(path).content
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"] == icon
