"""Who may do what with the stage time limits (docs/access.md): sales ops edit the limits and choose each
account's head of sales; the head of sales views them and the escalations; nobody edits an escalation."""

from django.db import migrations

from apps.core import group_permissions

VIEW = ("stagelimit", "headofsales", "escalation")
SALES_OPS_EDIT = {"stagelimit": ("add", "change", "delete"), "headofsales": ("add", "change", "delete")}


def grant(apps, schema_editor):
    group_permissions.grant(apps, app_label="escalations", view=VIEW, sales_ops=SALES_OPS_EDIT)


def revoke(apps, schema_editor):
    group_permissions.revoke(apps, app_label="escalations", view=VIEW, sales_ops=SALES_OPS_EDIT)


class Migration(migrations.Migration):
    dependencies = [
        ("escalations", "0001_stage_limits"),
        ("users", "0003_group_permissions"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
