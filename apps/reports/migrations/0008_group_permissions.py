"""Who may do what with the reports' admin pages (docs/access.md): sales ops manage export clients, the
stages' usual times and the forecast's categories and settings; the head of sales views them and the
snapshots; nobody edits a snapshot."""

from django.db import migrations

from apps.core import group_permissions

VIEW = (
    "exportclient",
    "stagenorm",
    "coveragesnapshot",
    "forecastcategory",
    "forecastsettings",
    "forecastsnapshot",
    "forecastsnapshotdeal",
)
SALES_OPS_EDIT = {
    model: ("add", "change", "delete")
    for model in ("exportclient", "stagenorm", "forecastcategory", "forecastsettings")
}


def grant(apps, schema_editor):
    group_permissions.grant(apps, app_label="reports", view=VIEW, sales_ops=SALES_OPS_EDIT)


def revoke(apps, schema_editor):
    group_permissions.revoke(apps, app_label="reports", view=VIEW, sales_ops=SALES_OPS_EDIT)


class Migration(migrations.Migration):
    dependencies = [
        ("reports", "0007_report_indexes"),
        ("users", "0003_group_permissions"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
