from django.db import migrations

ROLES = (
    # code, label, is_decision_maker, weight, sort
    ("decision_maker", "Decision maker (economic buyer)", True, 5, 10),
    ("technical_evangelist", "Technical evangelist", False, 3, 20),
    ("user", "User", False, 1, 30),
    ("lawyer", "Lawyer", False, 2, 40),
    ("influencer", "Influencer", False, 1, 50),
    ("blocker", "Blocker", False, 3, 60),
)


def create_roles(apps, schema_editor):
    Role = apps.get_model("stakeholders", "Role")
    for code, label, is_decision_maker, weight, sort in ROLES:
        Role.objects.get_or_create(
            code=code,
            defaults={"label": label, "is_decision_maker": is_decision_maker, "weight": weight, "sort": sort},
        )


def remove_roles(apps, schema_editor):
    apps.get_model("stakeholders", "Role").objects.filter(code__in=[role[0] for role in ROLES]).delete()


class Migration(migrations.Migration):
    dependencies = [("stakeholders", "0001_initial")]

    operations = [migrations.RunPython(create_roles, remove_roles)]
