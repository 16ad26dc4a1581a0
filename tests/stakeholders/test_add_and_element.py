"""Against the Kommo sandbox: a contact-only stakeholder's approval needs their Stakeholders element, which
the portal creates on request; and a stakeholder added as a new contact lands in Kommo with its role."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.kommo.models.mirror import Lead, StageChange, Status
from apps.kommo.provenance import MirrorSource, Provenance
from apps.kommo.types import LeadWrite
from apps.stakeholders.bootstrap import account_bootstrap
from apps.stakeholders.models import Role, Stakeholder, StakeholderEvent
from apps.stakeholders.services import (
    NewStakeholder,
    StakeholderChange,
    StakeholderNeedsElement,
    stakeholder_add_in_kommo,
    stakeholder_update_in_kommo,
)
from tests.stakeholders.conftest import client_for, connect, contact_only_stakeholder, mirror_sync

pytestmark = [pytest.mark.sandbox, pytest.mark.django_db(transaction=False)]
BY_MANAGER = Provenance(MirrorSource.MANAGER)  # a change made on the deal's stakeholder page


@pytest.fixture
def prepared(demo_sandbox, tmp_path):  # type: ignore[no-untyped-def]
    account = connect(demo_sandbox)
    client = client_for(account, tmp_path)
    account_bootstrap(account=account, public_url="http://127.0.0.1:8000", client=client)
    mirror_sync(account=account, client=client)
    return account, client


def test_a_contact_only_stakeholders_approval_creates_their_element_on_request(prepared):
    account, client = prepared
    deal = Lead.objects.filter(account=account, is_deleted=False).order_by("kommo_id").first()
    lawyer = Role.objects.get(code="lawyer")
    nora = contact_only_stakeholder(
        account=account, client=client, deal=deal, name="Nora Contact", role=lawyer
    )
    assert (nora.catalog_element, nora.role, nora.approval_status) == (None, lawyer, "unknown")
    change = StakeholderChange(role=lawyer, approval_status="approved", last_touch=timezone.now())

    with pytest.raises(
        StakeholderNeedsElement, match="Nora Contact has no Stakeholders element on this deal"
    ):
        stakeholder_update_in_kommo(stakeholder=nora, change=change, provenance=BY_MANAGER, client=client)
    written = stakeholder_update_in_kommo(
        stakeholder=nora, change=change, provenance=BY_MANAGER, client=client, create_element=True
    )

    assert written is True
    rows = Stakeholder.objects.filter(lead=deal, name="Nora Contact")
    (row,) = rows  # one person, one stakeholder
    assert row.catalog_element is not None and row.contact_id == nora.contact_id
    assert (row.approval_status, row.role, row.source) == ("approved", lawyer, "both")
    kommo_deal = client.leads_get(deal.kommo_id, with_=("catalog_elements",))
    assert row.catalog_element.kommo_id in {element.id for element in kommo_deal.catalog_elements}


def test_a_stakeholder_added_as_a_new_contact_is_a_contact_of_the_deal_with_its_role_and_an_element(prepared):
    account, client = prepared
    deal = Lead.objects.filter(account=account, is_deleted=False).order_by("-kommo_id").first()
    user = Role.objects.get(code="user")
    change = StakeholderChange(role=user, approval_status="pending", last_touch=timezone.now())

    stakeholder_add_in_kommo(
        lead=deal,
        new=NewStakeholder(change=change, name="Omar New", as_contact=True),
        provenance=BY_MANAGER,
        client=client,
    )

    (row,) = Stakeholder.objects.filter(lead=deal, name="Omar New")
    assert row.contact is not None and row.catalog_element is not None
    assert (row.role, row.approval_status) == (user, "pending")
    kommo_deal = client.leads_get(deal.kommo_id, with_=("contacts", "catalog_elements"))
    assert row.contact.kommo_id in {contact.id for contact in kommo_deal.contacts}
    assert row.catalog_element.kommo_id in {element.id for element in kommo_deal.catalog_elements}
    # Derived on the deal's re-read after the element was linked: the history says who added the person.
    history = StakeholderEvent.objects.filter(stakeholder_id=row.pk)
    assert history.filter(field="presence").exists()
    assert set(history.values_list("source", flat=True)) == {"manager"}


def test_an_edit_s_re_read_of_a_deal_moved_in_kommo_meanwhile_records_no_move_and_derives_it(prepared):
    """A manager's edit ends with a re-read of the deal (its new links): a move made in Kommo since the
    mirror's copy is seen there, but it is Kommo's to report (its webhook, or the events sweep, with the
    exact time and who moved it, which hand it to the gates). The edit records none, so it needs nothing of
    the gates; it derives the deal's stakeholders itself."""
    account, client = prepared
    deal = Lead.objects.filter(account=account, is_deleted=False, closed_at__isnull=True).order_by(
        "kommo_id"
    )[0]
    target = Status.objects.filter(pipeline=deal.pipeline, is_won=False, is_lost=False).exclude(
        pk=deal.status_id
    )[0]
    client.leads_update([LeadWrite(id=deal.kommo_id, status_id=target.kommo_id)])
    before = StageChange.objects.filter(lead=deal).count()
    change = StakeholderChange(
        role=Role.objects.get(code="user"), approval_status="pending", last_touch=timezone.now()
    )

    stakeholder_add_in_kommo(
        lead=deal, new=NewStakeholder(change=change, name="Pia Element"), provenance=BY_MANAGER, client=client
    )

    deal.refresh_from_db()
    assert deal.status_kommo_id == target.kommo_id  # the re-read mirrored the deal
    assert StageChange.objects.filter(lead=deal).count() == before
    (row,) = Stakeholder.objects.filter(lead=deal, name="Pia Element")
    assert row.catalog_element is not None and row.role.code == "user"
