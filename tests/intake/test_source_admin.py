"""The intake source form names Kommo's pipeline, stage and responsible user from the mirror, and takes
tags one per input."""

import pytest
from django.urls import reverse

from apps.intake.models import IntakeSource
from apps.kommo.models import KommoAccount
from tests.factories import KommoAccountFactory, KommoUserFactory, PipelineFactory, StatusFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def mirror():
    account = KommoAccountFactory(
        name="Acme", base_url="https://acme.kommo.com", auth_kind=KommoAccount.AuthKind.LONG_LIVED
    )
    pipeline = PipelineFactory(account=account, kommo_id=7100001, name="B2B sales")
    StatusFactory(account=account, kommo_id=61000001, pipeline=pipeline, name="Incoming leads", sort=10)
    KommoUserFactory(account=account, kommo_id=10500003, name="Chris Novak", email="chris@acme.io")
    return account


def test_the_form_offers_pipelines_stages_and_users_by_name(admin_client, mirror):
    page = admin_client.get(reverse("admin:intake_intakesource_add")).content.decode()

    assert '<option value="7100001">B2B sales</option>' in page
    assert '<option value="61000001">B2B sales / Incoming leads</option>' in page
    assert '<option value="10500003">Chris Novak &lt;chris@acme.io&gt;</option>' in page


def test_a_source_is_saved_with_the_chosen_ids_and_its_tags(admin_client, mirror):
    response = admin_client.post(
        reverse("admin:intake_intakesource_add"),
        {
            "name": "Website",
            "account": mirror.pk,
            "pipeline_kommo_id": "7100001",
            "status_kommo_id": "61000001",
            "responsible_user_kommo_id": "10500003",
            "tags": ["web", " spring-campaign ", "web", ""],
            "default_phone_region": "",
            "payload_window_hours": 24,
            "is_active": "on",
        },
    )

    assert response.status_code == 302, response.content.decode()[-3000:]
    source = IntakeSource.objects.get(name="Website")
    assert (source.pipeline_kommo_id, source.status_kommo_id) == (7100001, 61000001)
    assert source.responsible_user_kommo_id == 10500003
    assert source.tags == ["web", "spring-campaign"]
