"""The head of sales and sales ops see the reports on every deal: the permission reports.view_reports.
Created here rather than left to post_migrate, so that the groups have it as soon as this has run."""

from django.db import migrations

GROUPS = ("Head of sales", "Sales ops")


def grant(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    content_type, _ = ContentType.objects.get_or_create(app_label="reports", model="reportaccess")
    permission, _ = Permission.objects.get_or_create(
        content_type=content_type, codename="view_reports", defaults={"name": "Can see the reports on every deal"}
    )
    for name in GROUPS:
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(permission)


def revoke(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    permission = Permission.objects.filter(content_type__app_label="reports", codename="view_reports").first()
    if permission is not None:
        for group in Group.objects.filter(name__in=GROUPS):
            group.permissions.remove(permission)


class Migration(migrations.Migration):
    dependencies = [
        ("reports", "0001_report_access"),
        ("users", "0002_groups"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
