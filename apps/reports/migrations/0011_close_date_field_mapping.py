"""The expected close date field moves from the reports' own ForecastSettings to the field mappings (attribute
"expected_close", source "lead_field"), like every other field the portal reads; the settings row goes."""

from django.db import migrations


def settings_to_mappings(apps, schema_editor):
    ForecastSettings = apps.get_model("reports", "ForecastSettings")
    FieldMapping = apps.get_model("stakeholders", "FieldMapping")
    for row in ForecastSettings.objects.exclude(close_date_field_id__isnull=True):
        FieldMapping.objects.update_or_create(
            account_id=row.account_id,
            attribute="expected_close",
            source="lead_field",
            defaults={"field_id": row.close_date_field_id, "catalog_id": None},
        )


def mappings_to_settings(apps, schema_editor):
    ForecastSettings = apps.get_model("reports", "ForecastSettings")
    FieldMapping = apps.get_model("stakeholders", "FieldMapping")
    for mapping in FieldMapping.objects.filter(attribute="expected_close", source="lead_field"):
        ForecastSettings.objects.update_or_create(
            account_id=mapping.account_id, defaults={"close_date_field_id": mapping.field_id}
        )
    FieldMapping.objects.filter(attribute="expected_close", source="lead_field").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("reports", "0010_gate_report_indexes"),
        ("stakeholders", "0006_deal_field_expected_close"),
    ]

    operations = [
        migrations.RunPython(settings_to_mappings, mappings_to_settings),
        migrations.DeleteModel(name="ForecastSettings"),
    ]
