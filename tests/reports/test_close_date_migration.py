"""The expected close date field moves from the reports' ForecastSettings to the field mappings: an account's
setting becomes its mapping, and back when the migration is reversed."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("reports", "0010_gate_report_indexes"), ("stakeholders", "0006_deal_field_expected_close")]
AFTER = [("reports", "0011_close_date_field_mapping")]


@pytest.mark.django_db(transaction=True)
def test_an_account_s_close_date_setting_becomes_its_deal_field_mapping_and_back() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    account = apps.get_model("kommo", "KommoAccount").objects.create(
        name="Acme", base_url="https://a.kommo.com"
    )
    bare = apps.get_model("kommo", "KommoAccount").objects.create(name="Bare", base_url="https://b.kommo.com")
    settings = apps.get_model("reports", "ForecastSettings")
    settings.objects.create(account_id=account.pk, close_date_field_id=777)
    settings.objects.create(account_id=bare.pk, close_date_field_id=None)
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
        mappings = executor.loader.project_state(AFTER).apps.get_model("stakeholders", "FieldMapping")
        assert list(mappings.objects.values_list("account_id", "attribute", "source", "field_id")) == [
            (account.pk, "expected_close", "lead_field", 777)
        ]

        executor = MigrationExecutor(connection)
        executor.migrate(BEFORE)
        settings = executor.loader.project_state(BEFORE).apps.get_model("reports", "ForecastSettings")
        assert list(settings.objects.values_list("account_id", "close_date_field_id")) == [(account.pk, 777)]
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
