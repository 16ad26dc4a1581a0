"""Granting the portal groups their admin permissions from a data migration (docs/access.md).

Django creates permissions after the last migration, but a data migration that hands them to the groups
needs them at once: :func:`grant` creates the app's permissions first, then gives both groups ``view`` on
``view`` models and sales ops the listed extra actions; :func:`revoke`, given the same arguments, takes back
exactly those.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.contrib.auth.management import create_permissions

HEAD_OF_SALES = "Head of sales"
SALES_OPS = "Sales ops"


def grant(
    apps: Any, *, app_label: str, view: Iterable[str], sales_ops: Mapping[str, Iterable[str]] | None = None
) -> None:
    app_config = apps.get_app_config(app_label)
    app_config.models_module = True
    create_permissions(app_config, verbosity=0, apps=apps)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    viewing = [_permission(apps, app_label, f"view_{model}") for model in view]
    for name in (HEAD_OF_SALES, SALES_OPS):
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*viewing)
    Group.objects.get(name=SALES_OPS).permissions.add(
        *[_permission(apps, app_label, codename) for codename in _codenames(sales_ops)]
    )


def revoke(
    apps: Any, *, app_label: str, view: Iterable[str], sales_ops: Mapping[str, Iterable[str]] | None = None
) -> None:
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    codenames = [f"view_{model}" for model in view] + _codenames(sales_ops)
    permissions = Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames)
    for group in Group.objects.filter(name__in=(HEAD_OF_SALES, SALES_OPS)):
        group.permissions.remove(*permissions)


def _codenames(actions_by_model: Mapping[str, Iterable[str]] | None) -> list[str]:
    return [f"{action}_{model}" for model, actions in (actions_by_model or {}).items() for action in actions]


def _permission(apps: Any, app_label: str, codename: str) -> Any:
    Permission = apps.get_model("auth", "Permission")
    permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
    if permission is None:
        raise RuntimeError(f"permission {app_label}.{codename} is missing")
    return permission
