"""The stakeholder history's admin list (read-only) is viewed by the head of sales and sales ops alike."""

from django.db import migrations

from apps.core import group_permissions


def grant(apps, schema_editor):
    group_permissions.grant(apps, app_label="stakeholders", view=("stakeholderevent",))


def revoke(apps, schema_editor):
    group_permissions.revoke(apps, app_label="stakeholders", view=("stakeholderevent",))


class Migration(migrations.Migration):
    dependencies = [
        ("stakeholders", "0003_history_approvals_objections"),
        ("users", "0003_group_permissions"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
