"""E-mails end to end on the sandbox: an e-mail to a deal's contact reaches the portal as the mail note's
webhook, a real Celery worker (Redis, PostgreSQL) makes it the stakeholder's last touch with a history row,
and a "touched within 7 days" gate that held the deal back lets the same move stay; an incoming e-mail on the
deal, through the stage's Digital Pipeline ``mail_in`` hook, touches the deal's main contact."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from apps.gates.models import GateCondition, GateDecision, GateRule
from apps.kommo.models import KommoAccount, Status
from apps.kommo.models.mirror import LeadContact
from apps.stakeholders.models import Stakeholder, StakeholderEvent
from kommo_sandbox.server import SandboxServer
from tests.kommo.sandbox_support import GatedPortal, sandbox_admin, sandbox_api
from tests.support.marks import END_TO_END
from tests.support.services import wait_for

pytestmark = END_TO_END

STAGE = "Technical validation"  # no default rule guards it


def status_of(sandbox: SandboxServer, kommo_id: int) -> int:
    return sandbox_api(sandbox, "GET", f"/api/v4/leads/{kommo_id}")["status_id"]


def untouched_for_a_week(account: KommoAccount) -> Stakeholder:
    """A contact's stakeholder on a deal in ``STAGE`` whose role nobody on the deal touched this week."""
    week_ago = timezone.now() - dt.timedelta(days=7)
    rows = (
        Stakeholder.objects.filter(account=account, lead__status__name=STAGE, lead__is_deleted=False)
        .filter(contact__isnull=False, role__isnull=False)
        .select_related("lead", "contact", "role")
        .order_by("pk")
    )
    for row in rows:
        peers = Stakeholder.objects.filter(lead=row.lead, role=row.role)
        if all(peer.last_touch is None or peer.last_touch < week_ago for peer in peers):
            return row
    raise AssertionError(f"the demo seed has no deal in {STAGE} with a role untouched for a week")


def test_an_email_to_a_deals_contact_touches_its_stakeholder_and_the_touched_within_gate_lets_the_move_stay(
    gated_portal: GatedPortal,
) -> None:
    account, sandbox = gated_portal.account, gated_portal.sandbox
    person = untouched_for_a_week(account)
    deal = person.lead
    assert deal.status is not None
    after = (
        Status.objects.filter(
            pipeline=deal.status.pipeline, sort__gt=deal.status.sort, is_won=False, is_lost=False
        )
        .order_by("sort")
        .first()
    )
    assert after is not None
    rule = GateRule.objects.create(
        account=account,
        name=f"Someone as {person.role} touched this week to leave {STAGE}",
        pipeline=deal.status.pipeline,
        gated_stage=deal.status,
        mode=GateRule.Mode.ENFORCE,
    )
    GateCondition.objects.create(
        rule=rule, role=person.role, requirement=GateCondition.Requirement.TOUCHED_WITHIN, n=1, days=7
    )

    # Untouched for a week: the move past the stage is sent back.
    sandbox_api(sandbox, "PATCH", f"/api/v4/leads/{deal.kommo_id}", {"status_id": after.kommo_id})
    blocked = wait_for(
        lambda: GateDecision.objects.filter(lead=deal, rule=rule).first(), timeout=30, message="the decision"
    )
    assert blocked.outcome == GateDecision.Outcome.BLOCKED, blocked.reasons
    wait_for(
        lambda: status_of(sandbox, deal.kommo_id) == deal.status.kommo_id, timeout=30, message="move back"
    )

    # An e-mail comes in from the person: Kommo's mail note on the contact, sent as note_contact.
    note = sandbox_admin(sandbox, "POST", "/_sandbox/mail", {"contact_id": person.contact.kommo_id})
    sent = dt.datetime.fromtimestamp(note["created_at"], tz=dt.UTC)
    touched = wait_for(
        lambda: Stakeholder.objects.filter(pk=person.pk, last_touch=sent).first(),
        timeout=30,
        message="the e-mail as the last touch",
    )
    assert touched.last_touch == sent
    row = StakeholderEvent.objects.get(stakeholder_id=person.pk, field="last_touch", new=sent.isoformat())
    assert (row.source, row.at) == ("webhook", sent)

    # The same move again: it stays.
    sandbox_api(sandbox, "PATCH", f"/api/v4/leads/{deal.kommo_id}", {"status_id": after.kommo_id})
    allowed = wait_for(
        lambda: GateDecision.objects.filter(
            lead=deal, rule=rule, outcome=GateDecision.Outcome.ALLOWED
        ).first(),
        timeout=30,
        message="the second decision",
    )
    assert allowed.reasons == []
    assert status_of(sandbox, deal.kommo_id) == after.kommo_id

    # An incoming e-mail on the deal: the stage's Digital Pipeline mail_in hook, the deal's main contact.
    deal.refresh_from_db()
    stage = {"pipeline_id": deal.pipeline_kommo_id, "status_id": after.kommo_id, "event": "mail_in"}
    sandbox_admin(sandbox, "PUT", "/_sandbox/dp-webhooks", {**stage, "url": account.webhook_url})
    link = LeadContact.objects.get(lead=deal, is_main=True)
    main = Stakeholder.objects.get(lead=deal, contact=link.contact)
    before = main.last_touch
    asked = timezone.now()
    sandbox_admin(sandbox, "POST", "/_sandbox/mail", {"lead_id": deal.kommo_id, "created_at": 1_000_000_000})
    main = wait_for(
        lambda: Stakeholder.objects.filter(pk=main.pk, last_touch__gte=asked).first(),
        timeout=30,
        message="the mail_in hook as the main contact's last touch",
    )
    assert before is None or main.last_touch > before
    assert main.last_touch <= timezone.now()
