"""What each group may do in the admin, as given by the data migration (apps/users/migrations/0003)."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from apps.kommo.models import KommoAccount
from apps.stakeholders.models import Role
from apps.users.models import User
from tests.factories import KommoAccountFactory

pytestmark = pytest.mark.django_db


def person(username: str, group: str, *, staff: bool = True) -> User:
    user = User.objects.create_user(username, password="secret-pass-1", is_staff=staff)
    user.groups.add(Group.objects.get(name=group))
    return User.objects.get(pk=user.pk)  # fresh: no cached permissions


@pytest.fixture
def account() -> KommoAccount:
    return KommoAccountFactory(
        name="Acme", base_url="https://acme.kommo.com", auth_kind=KommoAccount.AuthKind.LONG_LIVED
    )


EDITED_BY_SALES_OPS = [
    "gates.add_gaterule",
    "gates.change_gaterule",
    "gates.change_gatecondition",
    "stakeholders.add_role",
    "stakeholders.change_role",
    "stakeholders.change_fieldmapping",
    "stakeholders.change_fieldmappingvalue",
    "intake.add_intakesource",
    "intake.change_intakesource",
    "kommo.add_kommoaccount",
    "kommo.change_kommoaccount",
    "users.add_user",
    "users.change_user",
]
VIEWED_BY_BOTH = [
    "kommo.view_lead",
    "kommo.view_stagechange",
    "kommo.view_webhookevent",
    "kommo.view_outboundchange",
    "stakeholders.view_stakeholder",
    "gates.view_gatedecision",
    "gates.view_gaterule",
    "intake.view_intakesubmission",
    "users.view_user",
]


def test_sales_ops_edit_rules_roles_mappings_sources_and_accounts():
    ops = person("sam", "Sales ops")

    assert all(ops.has_perm(code) for code in EDITED_BY_SALES_OPS + VIEWED_BY_BOTH)
    assert ops.has_perm("kommo.change_webhookevent")  # runs its actions: reprocess
    assert not ops.has_perm("users.delete_user")


def test_the_head_of_sales_views_everything_and_changes_nothing():
    head = person("hana", "Head of sales")

    assert all(head.has_perm(code) for code in VIEWED_BY_BOTH)
    assert not any(head.has_perm(code) for code in EDITED_BY_SALES_OPS)
    assert not any(
        codename.split("_")[0] in {"add", "change", "delete"}
        for codename in head.get_all_permissions()
        if not codename.startswith("reports.")
    )


def test_managers_have_no_admin_permission():
    manager = person("chris", "Manager", staff=False)

    assert manager.get_all_permissions() == set()


def test_a_staff_user_in_sales_ops_uses_the_admin(client, account):
    client.force_login(person("sam", "Sales ops"))

    index = client.get(reverse("admin:index"))
    rule_form = client.get(reverse("admin:gates_gaterule_add"))
    saved = client.post(
        reverse("admin:stakeholders_role_add"),
        {"code": "cfo", "label": "CFO", "weight": 1, "sort": 50, "active": "on"},
    )
    accounts = client.get(reverse("admin:kommo_kommoaccount_changelist"))

    assert index.status_code == 200
    assert reverse("admin:gates_gaterule_changelist") in index.content.decode()
    assert rule_form.status_code == 200
    assert saved.status_code == 302, saved.content.decode()[-2000:]
    assert Role.objects.filter(code="cfo").exists()
    assert "reset_circuit_breaker" in accounts.content.decode()


def test_the_head_of_sales_views_the_admin_but_cannot_change(client, account):
    client.force_login(person("hana", "Head of sales"))

    rules = client.get(reverse("admin:gates_gaterule_changelist"))
    add = client.get(reverse("admin:gates_gaterule_add"))
    account_page = client.get(reverse("admin:kommo_kommoaccount_change", args=[account.pk]))
    renamed = client.post(
        reverse("admin:kommo_kommoaccount_change", args=[account.pk]),
        {"name": "Renamed", "base_url": account.base_url, "rate_limit_per_second": 7},
    )
    accounts = client.get(reverse("admin:kommo_kommoaccount_changelist"))

    assert rules.status_code == 200
    assert add.status_code == 403
    assert account_page.status_code == 200 and 'name="name"' not in account_page.content.decode()
    assert renamed.status_code == 403
    assert KommoAccount.objects.get(pk=account.pk).name == "Acme"
    assert "reset_circuit_breaker" not in accounts.content.decode()
    assert "regenerate_webhook_token" not in accounts.content.decode()


def test_a_manager_is_refused_by_the_admin(client):
    client.force_login(person("chris", "Manager", staff=False))

    response = client.get(reverse("admin:index"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_sales_ops_cannot_make_anyone_a_superuser(client):
    client.force_login(person("sam", "Sales ops"))
    other = User.objects.create_user("other")

    page = client.get(reverse("admin:users_user_change", args=[other.pk])).content.decode()

    assert 'name="is_superuser"' not in page
    assert 'name="user_permissions"' not in page


def test_sales_ops_cannot_change_a_superuser(client):
    client.force_login(person("sam", "Sales ops"))
    root = User.objects.create_superuser("root", "root@example.com", "secret-pass-1")

    response = client.post(
        reverse("admin:users_user_change", args=[root.pk]),
        {"username": "root", "is_superuser": "on"},
    )

    assert response.status_code == 403


@pytest.mark.parametrize("group", ["Head of sales", "Sales ops"])
def test_every_page_of_the_admin_is_viewed_by_the_head_of_sales_and_sales_ops(group):
    from django.contrib import admin

    viewer = person(f"viewer-{group}", group)

    missing = [
        f"{model._meta.app_label}.view_{model._meta.model_name}"
        for model in admin.site._registry
        if not viewer.has_perm(f"{model._meta.app_label}.view_{model._meta.model_name}")
    ]
    assert missing == []


def test_sales_ops_manage_export_clients_usual_times_and_forecast_categories_the_head_of_sales_does_not():
    ops = person("sol", "Sales ops")
    head = person("hal", "Head of sales")
    managed = [
        f"reports.{action}_{model}"
        for model in ("exportclient", "stagenorm", "forecastcategory")
        for action in ("add", "change", "delete")
    ]

    assert all(ops.has_perm(code) for code in managed)
    assert not any(head.has_perm(code) for code in managed)
    assert not ops.has_perm("reports.change_forecastsnapshot")
