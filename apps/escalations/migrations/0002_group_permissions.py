"""Who may do what with the stage time limits (docs/access.md): sales ops edit the limits and choose each
account's head of sales; the head of sales views them and the escalations; nobody edits an escalation."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW = ("stagelimit", "headofsales", "escalation")
SALES_OPS_EDIT = {"stagelimit": ("add", "change", "delete"), "headofsales": ("add", "change", "delete")}
GROUPS = ("Head of sales", "Sales ops")


def _permission(apps, codename):
    Permission = apps.get_model("auth", "Permission")
    permission = Permission.objects.filter(content_type__app_label="escalations", codename=codename).first()
    if permission is None:
        raise RuntimeError(f"permission escalations.{codename} is missing")
    return permission


def grant(apps, schema_editor):
    # Permissions are otherwise created after the last migration; the groups need them now.
    app_config = apps.get_app_config("escalations")
    app_config.models_module = True
    create_permissions(app_config, verbosity=0, apps=apps)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    view = [_permission(apps, f"view_{model}") for model in VIEW]
    for name in GROUPS:
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*view)
    ops = Group.objects.get(name="Sales ops")
    ops.permissions.add(
        *[_permission(apps, f"{action}_{model}") for model, actions in SALES_OPS_EDIT.items() for action in actions]
    )


def revoke(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    permissions = Permission.objects.filter(content_type__app_label="escalations")
    for group in Group.objects.filter(name__in=GROUPS):
        group.permissions.remove(*permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("escalations", "0001_stage_limits"),
        ("users", "0003_group_permissions"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
