"""The reports add "Stuck" to the managers' deal list: the filter keeps the deals the stuck-deals report
calls stuck, and their rows say why."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from apps.kommo.models import Contact, Lead
from apps.stakeholders.models import Role, Stakeholder
from apps.users.models import User
from tests.factories import KommoAccountFactory, PipelineFactory, StatusFactory

pytestmark = pytest.mark.django_db


def test_the_deal_list_filters_the_stuck_deals_and_says_why(client):
    account = KommoAccountFactory(name="Acme", base_url="https://acme.kommo.com")
    pipeline = PipelineFactory(account=account, kommo_id=1, name="B2B")
    stage = StatusFactory(account=account, pipeline=pipeline, kommo_id=11, name="Legal review", sort=50)

    def deal(name: str, **fields) -> Lead:
        return Lead.objects.create(
            account=account,
            kommo_id=Lead.objects.count() + 100,
            name=name,
            pipeline=pipeline,
            pipeline_kommo_id=1,
            status=stage,
            status_kommo_id=11,
            created_at=timezone.now(),
            **fields,
        )

    moving = deal("Moving deal", raw={"closest_task_at": 1900000000})
    contact = Contact.objects.create(account=account, kommo_id=7, name="Ann")
    Stakeholder.objects.create(
        account=account,
        lead=moving,
        contact=contact,
        role=Role.objects.get(code="decision_maker"),
        approval_status="approved",
        last_touch=timezone.now(),
        source=Stakeholder.Source.CONTACT_FIELD,
        name="Ann",
    )
    deal("Forgotten deal")  # nobody identified, no open task
    head = User.objects.create_user("dana", password="pw")
    head.groups.add(Group.objects.get(name="Head of sales"))
    client.force_login(head)

    everything = client.get(reverse("stakeholders:deal_list"))
    stuck = client.get(reverse("stakeholders:deal_list"), {"stuck": "on"})

    assert {row.deal.name for row in everything.context["rows"]} == {"Moving deal", "Forgotten deal"}
    assert [row.deal.name for row in stuck.context["rows"]] == ["Forgotten deal"]
    (flags,) = [row.flags for row in stuck.context["rows"]]
    assert flags == ["Stuck: no stakeholder identified · no open task"]
    assert "Stuck" in everything.content.decode()
