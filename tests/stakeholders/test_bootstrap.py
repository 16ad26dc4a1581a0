"""kommo_bootstrap against a live Kommo sandbox: it creates what is missing, finds what exists, and a
second run creates nothing."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from apps.kommo.models import KommoAccount
from apps.kommo.models.mirror import Lead
from apps.stakeholders.bootstrap import WEBHOOK_SETTINGS, account_bootstrap
from apps.stakeholders.models import FieldMapping, Role, Stakeholder
from tests.stakeholders.conftest import client_for, connect, mirror_sync

pytestmark = [pytest.mark.django_db, pytest.mark.sandbox]

PUBLIC_URL = "https://portal.example.com"


def writes_since(server, seq: int) -> list[str]:  # type: ignore[no-untyped-def]
    return [
        f"{entry['method']} {entry['path']}"
        for entry in server.app.request_log.entries(since=seq)
        if entry["method"] in {"POST", "PATCH", "DELETE"}
    ]


def test_the_first_run_creates_everything_and_the_second_creates_nothing(empty_sandbox, tmp_path):
    account = connect(empty_sandbox)
    client = client_for(account, tmp_path)

    start = empty_sandbox.app.request_log.last_seq
    first = account_bootstrap(account=account, public_url=PUBLIC_URL, client=client)
    first_writes = writes_since(empty_sandbox, start)
    middle = empty_sandbox.app.request_log.last_seq
    second = account_bootstrap(account=account, public_url=PUBLIC_URL, client=client)

    assert sorted(first_writes) == sorted(
        [
            "POST /api/v4/contacts/custom_fields",
            "POST /api/v4/catalogs",
            f"POST /api/v4/catalogs/{account_catalog_id(account)}/custom_fields",
            "POST /api/v4/webhooks",
        ]
    )
    # the contact field, the catalog, its 9 fields (role, approval and its days, last touch, the
    # objection's text, weight and days), the webhook
    assert len(first.created) == 12 and first.found == []
    assert writes_since(empty_sandbox, middle) == []
    assert second.created == [] and len(second.found) == 12
    assert second.mappings_changed is False


def account_catalog_id(account: KommoAccount) -> int:
    return FieldMapping.objects.get(account=account, attribute="approval_status").catalog_id


def test_what_it_creates_is_mapped_to_every_role_and_approval(empty_sandbox, tmp_path):
    account = connect(empty_sandbox)
    account_bootstrap(account=account, public_url=PUBLIC_URL, client=client_for(account, tmp_path))

    mappings = {(m.attribute, m.source): m for m in FieldMapping.objects.filter(account=account)}
    assert set(mappings) == {
        ("role", "contact_field"),
        ("role", "catalog_field"),
        ("approval_status", "catalog_field"),
        ("last_touch", "catalog_field"),
        ("approval_requested", "catalog_field"),
        ("approval_decided", "catalog_field"),
        ("objection", "catalog_field"),
        ("objection_weight", "catalog_field"),
        ("objection_raised", "catalog_field"),
        ("objection_resolved", "catalog_field"),
    }
    roles = set(Role.objects.filter(active=True))
    for key in (("role", "contact_field"), ("role", "catalog_field")):
        assert {value.role for value in mappings[key].values.all()} == roles
    approvals = set(mappings[("approval_status", "catalog_field")].values.values_list("approval", flat=True))
    assert approvals == {"pending", "approved", "rejected"}


def test_an_option_mapping_corrected_in_the_admin_is_kept_by_the_next_run(empty_sandbox, tmp_path):
    account = connect(empty_sandbox)
    client = client_for(account, tmp_path)
    account_bootstrap(account=account, public_url=PUBLIC_URL, client=client)
    role_values = FieldMapping.objects.get(account=account, attribute="role", source="contact_field").values
    approval_values = FieldMapping.objects.get(account=account, attribute="approval_status").values
    # sales ops point a role and an approval at other options than the ones bootstrap matched
    corrected_role = role_values.order_by("pk").first()
    corrected_approval = approval_values.order_by("pk").first()
    role_values.filter(pk=corrected_role.pk).update(enum_id=990001)
    approval_values.filter(pk=corrected_approval.pk).update(enum_id=990002)

    report = account_bootstrap(account=account, public_url=PUBLIC_URL, client=client)

    assert report.mappings_changed is False
    assert role_values.get(role=corrected_role.role).enum_id == 990001
    assert approval_values.get(approval=corrected_approval.approval).enum_id == 990002


def test_the_webhook_points_at_the_accounts_token_url_with_the_mirrors_events(empty_sandbox, tmp_path):
    account = connect(empty_sandbox)
    client = client_for(account, tmp_path)

    account_bootstrap(account=account, public_url=PUBLIC_URL + "/", client=client)

    (webhook,) = client.webhooks_list()
    assert webhook.destination == f"{PUBLIC_URL}/webhooks/kommo/{account.webhook_token}/"
    assert set(WEBHOOK_SETTINGS) <= set(webhook.settings)


def test_on_the_demo_account_it_finds_the_existing_fields_and_matches_roles_by_label(demo_sandbox, tmp_path):
    account = connect(demo_sandbox)
    start = demo_sandbox.app.request_log.last_seq

    report = account_bootstrap(account=account, public_url=PUBLIC_URL, client=client_for(account, tmp_path))

    # The demo's catalog has its role, approval, last touch and objection weight: the approval's and the
    # objection's other fields are added beside them.
    catalog_id = account_catalog_id(account)
    assert writes_since(demo_sandbox, start) == [
        f"POST /api/v4/catalogs/{catalog_id}/custom_fields",
        "POST /api/v4/webhooks",
    ]
    assert len(report.found) == 6 and report.warnings == []
    assert sorted(name.split("“")[1].split("”")[0] for name in report.created if "catalog field" in name) == [
        "Approval decided",
        "Approval requested",
        "Objection",
        "Objection raised",
        "Objection resolved",
    ]
    weight = FieldMapping.objects.get(account=account, attribute="objection_weight")
    assert weight.catalog_id == catalog_id
    role_field = FieldMapping.objects.get(account=account, attribute="role", source="contact_field")
    labels = {value.role.code for value in role_field.values.select_related("role")}
    assert labels == set(Role.objects.values_list("code", flat=True))  # "Decision maker" → decision_maker


def test_the_command_prints_what_it_created_and_what_it_found(empty_sandbox):
    account = connect(empty_sandbox)
    out = StringIO()

    call_command("kommo_bootstrap", "--account", str(account.pk), "--public-url", PUBLIC_URL, stdout=out)
    call_command("kommo_bootstrap", "--public-url", PUBLIC_URL, stdout=out)

    first, second = out.getvalue().split("field mappings", 1)
    assert first.count("created  ") == 12 and "found    " not in first
    assert "0 created, 12 found" in second


def test_after_bootstrap_and_a_sync_the_demo_deals_have_their_stakeholders(demo_sandbox, tmp_path):
    account = connect(demo_sandbox)
    client = client_for(account, tmp_path)
    account_bootstrap(account=account, public_url=PUBLIC_URL, client=client)

    mirror_sync(account=account, client=client)

    # The demo's 45 current deals and its year of history: 290 closed deals and 10 older open ones.
    assert Lead.objects.filter(account=account).count() == 345
    rows = Stakeholder.objects.filter(account=account)
    per_deal = {lead.pk: 0 for lead in Lead.objects.filter(account=account)}
    for row in rows:
        per_deal[row.lead_id] += 1
    assert min(per_deal.values()) >= 2 and max(per_deal.values()) <= 5
    assert set(rows.values_list("source", flat=True)) == {"both"}
    assert not rows.filter(role__isnull=True).exists()
    assert not rows.filter(approval_status="unknown").exists()
    # Every deal has its decision maker but five of the older open ones (the demo's coverage gap).
    with_decision_maker = rows.filter(role__code="decision_maker").values("lead").distinct().count()
    assert with_decision_maker == 345 - 5
