"""The intake flow (``apps.flows.intake``): a processed submission's mirror writes are followed by the
stakeholders and the gates, with no signal and no one calling the stakeholders afterwards."""

from __future__ import annotations

from unittest import mock

import pytest

from apps.flows.intake import intake_submission_process
from apps.intake.models import IntakeSubmission
from apps.kommo.models.mirror import Lead
from apps.stakeholders.models import Stakeholder
from tests.intake.conftest import submission_body
from tests.intake.test_processing import role_mapping, submit


@pytest.mark.django_db
def test_a_processed_submission_derives_the_deal_s_stakeholders_from_its_roles(api, kommo, account):
    role_mapping(account, "contact_field", field_id=900)

    submission = submit(api)
    intake_submission_process(submission_id=submission.pk)

    submission.refresh_from_db()
    assert submission.status == IntakeSubmission.Status.DONE
    lead = Lead.objects.get(account=account, kommo_id=submission.kommo_lead_id)
    rows = Stakeholder.objects.filter(lead=lead).order_by("name")
    assert [(row.name, row.role.code if row.role else None) for row in rows] == [
        ("Ann Buyer", "decision_maker"),
        ("Lee Lawyer", "lawyer"),
    ]


@pytest.mark.django_db
def test_a_move_an_intake_write_records_is_queued_for_the_gates(api, kommo, account):
    """A submission that adopts a deal the mirror holds at another stage (its earlier attempt created it,
    a webhook mirrored it, a manager moved it) records the move; the flow hands it to the gates."""
    submission = submit(api, submission_body(contacts=[{"name": "Ann", "emails": ["ann@acme.example"]}]))
    with mock.patch("apps.flows.sync.gates_queue_move") as queued:
        intake_submission_process(submission_id=submission.pk)
        submission.refresh_from_db()
        lead = Lead.objects.get(account=account, kommo_id=submission.kommo_lead_id)
        assert queued.call_count == 0  # a new deal: its entry into the first stage is no move
        kommo_deal = kommo.leads[submission.kommo_lead_id]
        kommo_deal["status_id"], kommo_deal["updated_at"] = 4002, kommo_deal["updated_at"] + 60
        IntakeSubmission.objects.filter(pk=submission.pk).update(
            status=IntakeSubmission.Status.RECEIVED, kommo_lead_id=None
        )

        intake_submission_process(submission_id=submission.pk)

    (call,) = queued.call_args_list
    move = call.kwargs["stage_change"]
    assert (move.lead_id, move.from_status_kommo_id, move.to_status_kommo_id) == (lead.pk, 4001, 4002)
