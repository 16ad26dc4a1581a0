"""The sync's and the events sweep's writes are followed by the stakeholders and the gates through the
``follow`` the flow gives them, inside the write's transaction (the mirror sends no signal)."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest

from apps.flows.sync import mirror_follow
from apps.gates.models import GateEvaluation
from apps.kommo import types
from apps.kommo.services.mirror import leads_upsert_from_kommo, stage_change_record
from tests.gates.conftest import NOW, board, kommo_lead  # noqa: F401 (the gates' fixtures)

pytestmark = pytest.mark.django_db


def test_a_move_a_sync_page_infers_is_queued_for_the_gates_and_its_deal_derived_again(
    board,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    board.rule("Legal review")
    lead = board.lead()
    signing = board.stage("Signing").kommo_id
    page = [types.Lead.from_api(kommo_lead(lead, status=signing, updated_at=NOW + dt.timedelta(hours=1)))]
    with (
        mock.patch("apps.flows.gates.evaluate_pending.apply_async") as schedule,
        mock.patch("apps.flows.sync.stakeholders_derive_for_mirror_changes") as derive,
        django_capture_on_commit_callbacks(execute=True),
    ):
        leads_upsert_from_kommo(account=board.account, leads=page, follow=mirror_follow)

    derive.assert_called_once_with(
        account=board.account, lead_ids=[lead.pk], contact_ids=[], catalog_element_ids=[]
    )
    evaluation = GateEvaluation.objects.get()
    assert (evaluation.stage_change.to_status_kommo_id, evaluation.fresh_after) == (signing, None)
    schedule.assert_called_once_with((board.account.pk,), countdown=mock.ANY)


def test_a_move_an_event_reports_is_queued_for_the_gates_once(board, django_capture_on_commit_callbacks):  # noqa: F811
    board.rule("Legal review")
    lead = board.lead()
    report = {
        "account": board.account,
        "lead": lead,
        "from_status_id": board.stage("Legal review").kommo_id,
        "to_status_id": board.stage("Signing").kommo_id,
        "at": NOW,
        "source": "events",
        "follow": mirror_follow,
    }
    with (
        mock.patch("apps.flows.gates.evaluate_pending.apply_async") as schedule,
        django_capture_on_commit_callbacks(execute=True),
    ):
        stage_change_record(**report, kommo_event_id="01abc")
        stage_change_record(**report, kommo_event_id="01abc")  # the same event read again

    assert GateEvaluation.objects.count() == 1
    assert schedule.call_count == 1
