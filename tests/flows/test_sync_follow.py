"""The sync's and the events sweep's writes are followed by the stakeholders and the gates through the
``follow`` the flow gives them, inside the write's transaction (the mirror sends no signal); the sweep's
touches and the history backfill's past field changes reach the stakeholders through the parameters the
flow gives them too, which neither runs without."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
import responses
from django.core.exceptions import ImproperlyConfigured

from apps.flows.sync import mirror_follow
from apps.gates.models import GateEvaluation
from apps.kommo import types
from apps.kommo.admin import follow as admin_follow
from apps.kommo.models import SyncState
from apps.kommo.provenance import MirrorSource, Provenance
from apps.kommo.services.mirror import leads_upsert_from_kommo, stage_change_record
from apps.kommo.services.sync import events_reconcile, history_backfill
from tests.factories import KommoAccountFactory
from tests.gates.conftest import NOW, board, kommo_lead, legal_review_to_signing  # noqa: F401 (the gates' fixtures)

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
        mock.patch("apps.stakeholders.services.stakeholders_derive_for_mirror_changes") as derive,
        django_capture_on_commit_callbacks(execute=True),
    ):
        leads_upsert_from_kommo(account=board.account, leads=page, follow=mirror_follow)

    derive.assert_called_once_with(
        account=board.account,
        lead_ids=[lead.pk],
        contact_ids=[],
        catalog_element_ids=[],
        provenance=Provenance(MirrorSource.SYNC),
    )
    evaluation = GateEvaluation.objects.get()
    assert (evaluation.stage_change.to_status_kommo_id, evaluation.fresh_after) == (signing, None)
    schedule.assert_called_once_with((board.account.pk,), countdown=mock.ANY)


def test_a_move_an_event_reports_is_queued_for_the_gates_once(board, django_capture_on_commit_callbacks):  # noqa: F811
    board.rule("Legal review")
    lead = board.lead()
    report = {**legal_review_to_signing(board, lead), "source": "events", "follow": mirror_follow}
    with (
        mock.patch("apps.flows.gates.evaluate_pending.apply_async") as schedule,
        django_capture_on_commit_callbacks(execute=True),
    ):
        stage_change_record(**report, kommo_event_id="01abc")
        stage_change_record(**report, kommo_event_id="01abc")  # the same event read again

    assert GateEvaluation.objects.count() == 1
    assert schedule.call_count == 1


@pytest.mark.parametrize(
    "run",
    [
        pytest.param(
            lambda account: events_reconcile(account=account, follow=mirror_follow), id="events sweep"
        ),
        pytest.param(lambda account: history_backfill(account=account, days=1), id="history backfill"),
    ],
)
def test_the_sweep_and_the_backfill_do_not_run_without_what_follows_their_touches_and_field_changes(run):
    """Without ``touches_follow`` (``field_changes_follow``) the sweep (the backfill) refuses to start: it
    asks Kommo nothing and moves no cursor, instead of reading touches (field changes) nobody is given."""
    account = KommoAccountFactory(connected=True)

    with responses.RequestsMock(assert_all_requests_are_fired=False) as kommo:
        with pytest.raises(TypeError, match="_follow"):
            run(account)

    assert len(kommo.calls) == 0
    assert not SyncState.objects.filter(account=account).exists()


def test_the_admins_backfill_is_given_the_flows_field_changes_follow_and_fails_without_it(monkeypatch):
    account = KommoAccountFactory(connected=True)
    with mock.patch("apps.flows.sync.stakeholders_history_from_field_changes") as history:
        admin_follow.admin_field_changes_follow(account, ["a change"])
    history.assert_called_once_with(
        account=account, changes=["a change"], provenance=Provenance(MirrorSource.SYNC)
    )

    monkeypatch.setattr(admin_follow, "_given", [])
    with pytest.raises(ImproperlyConfigured):
        admin_follow.admin_field_changes_follow(account, [])
    with pytest.raises(ImproperlyConfigured):
        admin_follow.admin_follow(account, mock.Mock())
