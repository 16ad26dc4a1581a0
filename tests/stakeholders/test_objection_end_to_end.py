"""An objection end to end: raised on the manager's deal page, it lands on the person's Stakeholders element
in the Kommo sandbox, blocks the lawyer gate when the deal moves on (a real Celery worker on Redis and
PostgreSQL, the sandbox's webhooks to a live portal), and once resolved on the page the same move stays."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from apps.gates.models import GateCondition, GateDecision, GateRule
from apps.kommo.models import KommoAccount
from apps.stakeholders.bootstrap import CATALOG_OBJECTION, CATALOG_OBJECTION_RESOLVED
from apps.stakeholders.models import Approval, Role, Stakeholder, StakeholderEvent
from apps.users.models import User
from kommo_sandbox.server import SandboxServer
from tests.kommo.sandbox_support import GatedPortal, sandbox_api
from tests.support.marks import END_TO_END
from tests.support.services import wait_for

pytestmark = END_TO_END

LAWYER_GATE = "The lawyer approved to leave Legal review"


@pytest.fixture
def sandbox(gated_portal: GatedPortal) -> SandboxServer:
    return gated_portal.sandbox


@pytest.fixture
def portal(gated_portal: GatedPortal) -> KommoAccount:
    """The portal connected to the sandbox (tests/kommo/sandbox_support.py), the lawyer gate also asking
    that the lawyer has no objection."""
    account = gated_portal.account
    rule = GateRule.objects.get(account=account, name=LAWYER_GATE)
    GateCondition.objects.create(
        rule=rule,
        role=Role.objects.get(code="lawyer"),
        requirement=GateCondition.Requirement.NO_OBJECTION,
        min_weight=Decimal("0.5"),
    )
    rule.save()  # a new version, as the admin saves it
    return account


def element_fields(sandbox: SandboxServer, stakeholder: Stakeholder) -> dict[str, Any]:
    element = stakeholder.catalog_element
    assert element is not None
    data = sandbox_api(
        sandbox, "GET", f"/api/v4/catalogs/{element.catalog_kommo_id}/elements/{element.kommo_id}"
    )
    return {
        field["field_name"]: field["values"][0]["value"] for field in data.get("custom_fields_values") or []
    }


def status_of(sandbox: SandboxServer, kommo_id: int) -> int:
    return sandbox_api(sandbox, "GET", f"/api/v4/leads/{kommo_id}")["status_id"]


def test_an_objection_raised_on_the_page_blocks_the_gate_and_resolving_it_lets_the_move_stay(
    portal: KommoAccount, sandbox: SandboxServer, client: Any
) -> None:
    lawyer = (
        Stakeholder.objects.filter(
            account=portal,
            role__code="lawyer",
            approval_status=Approval.PENDING,
            lead__status__name="Legal review",
            catalog_element__isnull=False,
            objection_weight__isnull=True,
        )
        .select_related("lead", "catalog_element")
        .first()
    )
    assert lawyer is not None, "the demo seed has a deal in Legal review whose lawyer has no objection"
    deal = lawyer.lead
    stages = {
        s["name"]: s["id"]
        for s in sandbox_api(sandbox, "GET", f"/api/v4/leads/pipelines/{deal.pipeline_kommo_id}")[
            "_embedded"
        ]["statuses"]
    }
    legal, signing = stages["Legal review"], stages["Signing"]
    ops = User.objects.create_user("olga", password="secret-pass-1")
    ops.groups.add(Group.objects.get(name="Sales ops"))
    client.force_login(ops)
    urls = {
        name: reverse(f"stakeholders:{name}", args=[deal.pk, lawyer.pk])
        for name in ("stakeholder_update", "objection_save")
    }
    # The lawyer approves (so that only the objection can hold the deal), then objects.
    client.post(
        urls["stakeholder_update"],
        {f"s{lawyer.pk}-role": lawyer.role_id, f"s{lawyer.pk}-approval_status": "approved"},
    )
    page = client.post(
        urls["objection_save"],
        {
            f"o{lawyer.pk}-objection": "Liability cap",
            f"o{lawyer.pk}-objection_weight": "0.8",
            "action": "save",
        },
        follow=True,
    ).content.decode()
    assert "objection raised in Kommo" in page

    fields = element_fields(sandbox, lawyer)
    assert fields[CATALOG_OBJECTION] == "Liability cap"
    assert Decimal(str(fields["Objection weight"])) == Decimal("0.8")

    # A manager drags the card to Signing: the gate sends it back, naming the objection.
    sandbox_api(sandbox, "PATCH", f"/api/v4/leads/{deal.kommo_id}", {"status_id": signing})
    wait_for(lambda: status_of(sandbox, deal.kommo_id) == legal, timeout=30, message="the move back")
    blocked = GateDecision.objects.get(lead=deal, rule__name=LAWYER_GATE)
    assert blocked.outcome == GateDecision.Outcome.BLOCKED
    assert blocked.reasons == [
        "the lawyer has an open objection (" + lawyer.name + ": “Liability cap”, weight 0.8, open 0 days)"
    ]

    page = client.post(urls["objection_save"], {"action": "resolve"}, follow=True).content.decode()
    assert "objection resolved in Kommo" in page
    assert CATALOG_OBJECTION_RESOLVED in element_fields(sandbox, lawyer)

    sandbox_api(sandbox, "PATCH", f"/api/v4/leads/{deal.kommo_id}", {"status_id": signing})
    allowed = wait_for(
        lambda: GateDecision.objects.filter(lead=deal, outcome=GateDecision.Outcome.ALLOWED).first(),
        timeout=30,
        message="the second decision",
    )
    assert allowed.rule.name == LAWYER_GATE
    assert status_of(sandbox, deal.kommo_id) == signing
    sources = set(
        StakeholderEvent.objects.filter(stakeholder_id=lawyer.pk, field__startswith="objection").values_list(
            "source", flat=True
        )
    )
    assert sources == {"manager"}
