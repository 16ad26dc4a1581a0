"""What each group may do in the admin (docs/access.md).

Sales ops run the portal: they edit the rules, roles, mappings, intake sources and accounts, manage the
people who sign in, lift sign-in locks, and run the actions (a change permission on a read-only model — the mirror, webhook
events, outbound changes, submissions — lets its actions run). The head of sales views everything and
changes nothing. Managers have no admin permission at all: they work on their deal pages.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW_ALL = [
    ("kommo", "kommoaccount"),
    ("kommo", "pipeline"),
    ("kommo", "status"),
    ("kommo", "kommouser"),
    ("kommo", "customfield"),
    ("kommo", "customfieldenum"),
    ("kommo", "catalog"),
    ("kommo", "catalogelement"),
    ("kommo", "company"),
    ("kommo", "contact"),
    ("kommo", "contactchannel"),
    ("kommo", "lead"),
    ("kommo", "leadcontact"),
    ("kommo", "leadcatalogelement"),
    ("kommo", "stagechange"),
    ("kommo", "syncstate"),
    ("kommo", "outboundchange"),
    ("kommo", "webhookevent"),
    ("stakeholders", "role"),
    ("stakeholders", "fieldmapping"),
    ("stakeholders", "fieldmappingvalue"),
    ("stakeholders", "stakeholder"),
    ("gates", "gaterule"),
    ("gates", "gatecondition"),
    ("gates", "gateevaluation"),
    ("gates", "gatedecision"),
    ("intake", "intakesource"),
    ("intake", "intakesubmission"),
    ("users", "user"),
    ("auth", "group"),
    ("axes", "accessattempt"),
    ("axes", "accessfailurelog"),
    ("axes", "accesslog"),
]
# Sales ops: everything the head of sales sees, plus these.
SALES_OPS_EDIT = {
    ("gates", "gaterule"): ("add", "change", "delete"),
    ("gates", "gatecondition"): ("add", "change", "delete"),
    ("stakeholders", "role"): ("add", "change", "delete"),
    ("stakeholders", "fieldmapping"): ("add", "change", "delete"),
    ("stakeholders", "fieldmappingvalue"): ("add", "change", "delete"),
    ("intake", "intakesource"): ("add", "change", "delete"),
    ("kommo", "kommoaccount"): ("add", "change", "delete"),
    ("users", "user"): ("add", "change"),
    # Lifting a sign-in lock deletes its attempt row.
    ("axes", "accessattempt"): ("delete",),
    # Read-only in the admin; "change" lets their actions run (resync, reprocess, retry).
    ("kommo", "lead"): ("change",),
    ("kommo", "contact"): ("change",),
    ("kommo", "company"): ("change",),
    ("kommo", "webhookevent"): ("change",),
    ("kommo", "outboundchange"): ("change",),
    ("intake", "intakesubmission"): ("change",),
}


def _permissions(apps, pairs):
    Permission = apps.get_model("auth", "Permission")
    wanted = [(app_label, f"{action}_{model}") for (app_label, model), actions in pairs for action in actions]
    found = []
    for app_label, codename in wanted:
        permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
        if permission is None:
            raise RuntimeError(f"permission {app_label}.{codename} is missing")
        found.append(permission)
    return found


def grant(apps, schema_editor):
    # Permissions are otherwise created after the last migration; the groups need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    view = _permissions(apps, [(pair, ("view",)) for pair in VIEW_ALL])
    head, _ = Group.objects.get_or_create(name="Head of sales")
    head.permissions.add(*view)
    ops, _ = Group.objects.get_or_create(name="Sales ops")
    ops.permissions.add(*view, *_permissions(apps, SALES_OPS_EDIT.items()))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ("Head of sales", "Sales ops"):
        group = Group.objects.filter(name=name).first()
        if group is not None:
            group.permissions.clear()


class Migration(migrations.Migration):
    dependencies = [
        ("users", "0002_groups"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("kommo", "0008_webhook_body_lz4"),
        ("stakeholders", "0002_default_roles"),
        ("gates", "0002_evaluation_fresh_after"),
        ("intake", "0002_submission_kommo_marker"),
        ("axes", "0010_accessattemptexpiration"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
