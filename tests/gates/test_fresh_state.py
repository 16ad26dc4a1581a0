"""Fresh state without a second read: a move recorded by webhook processing is decided on the mirror's
copy of the deal when that copy was fetched after the move was reported; every other move is re-read."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest

from apps.flows.webhooks import webhook_batch
from apps.gates.models import GateDecision, GateEvaluation
from apps.gates.services import gate_evaluations_run, stage_change_gate_intake
from apps.kommo import types
from apps.kommo.models import Lead, StageChange, WebhookEvent
from apps.kommo.webhooks.parser import encode_form
from apps.kommo.webhooks.processing import Fetched, Policy, webhook_events_claim
from tests.gates.conftest import NOW, in_kommo, kommo_lead

REPORTED = NOW + dt.timedelta(seconds=2)  # the webhook of the move reached the portal
Outcome = GateDecision.Outcome


@pytest.fixture
def legal_gate(board):
    return board.rule("Legal review")


def mirrored(board, lead: Lead, *, stage: str, fetched_at: dt.datetime | None, **extra) -> None:
    """The mirror's copy of the deal, as a re-fetch at ``fetched_at`` left it."""
    raw = kommo_lead(lead, status=board.stage(stage).kommo_id, **extra)
    Lead.objects.filter(pk=lead.pk).update(raw=raw, fetched_at=fetched_at)


def queue_from_webhook_batch(board, change: StageChange) -> GateEvaluation:
    evaluation = stage_change_gate_intake(stage_change=change, fresh_after=REPORTED)
    assert evaluation is not None and evaluation.fresh_after == REPORTED
    return evaluation


def test_a_move_whose_deal_was_fetched_after_the_report_is_decided_without_reading_kommo(
    board, legal_gate, kommo_client, kommo
):
    lead = board.lead("Northwind renewal")
    change = board.move(lead, "Signing")
    mirrored(board, lead, stage="Signing", fetched_at=REPORTED + dt.timedelta(milliseconds=20))
    queue_from_webhook_batch(board, change)

    run = gate_evaluations_run(account_id=board.account.pk, client=kommo_client)

    assert kommo.calls == []
    decision = GateDecision.objects.get()
    assert decision.outcome == Outcome.BLOCKED
    assert decision.fresh_state["read"] == "mirror" and decision.fresh_state["status_id"] == 4005
    assert (run.from_mirror, run.kommo_reads, run.outbound) == (1, 0, 3)


def test_the_mirrors_copy_still_has_to_show_the_deal_where_the_move_put_it(
    board, legal_gate, kommo_client, kommo
):
    lead = board.lead()
    change = board.move(lead, "Signing")
    # Fetched after the report, and Kommo had it back in Legal review (a later move): nothing is done.
    later = NOW + dt.timedelta(seconds=1)
    mirrored(board, lead, stage="Legal review", fetched_at=REPORTED, updated_at=later)
    queue_from_webhook_batch(board, change)

    gate_evaluations_run(account_id=board.account.pk, client=kommo_client)

    assert kommo.calls == []
    assert GateDecision.objects.get().outcome == Outcome.STALE


def test_a_copy_fetched_before_the_report_is_read_again(board, legal_gate, kommo_client, kommo):
    lead = board.lead()
    change = board.move(lead, "Signing")
    mirrored(board, lead, stage="Legal review", fetched_at=REPORTED - dt.timedelta(seconds=5))
    queue_from_webhook_batch(board, change)
    in_kommo(kommo, lead, status=board.stage("Signing").kommo_id)

    run = gate_evaluations_run(account_id=board.account.pk, client=kommo_client)

    assert [request.method for request in kommo.requests] == ["GET"]
    decision = GateDecision.objects.get()
    assert decision.outcome == Outcome.BLOCKED and decision.fresh_state["read"] == "kommo"
    assert (run.from_mirror, run.kommo_reads) == (0, 1)


@pytest.mark.parametrize("source", [StageChange.Source.SYNC, StageChange.Source.EVENTS])
def test_moves_reported_by_the_sync_or_the_events_are_read_again(
    board, legal_gate, kommo_client, kommo, source
):
    lead = board.lead()
    change = board.move(lead, "Signing", source=source)
    mirrored(board, lead, stage="Signing", fetched_at=dt.datetime.now(tz=dt.UTC))
    assert stage_change_gate_intake(stage_change=change) is not None
    in_kommo(kommo, lead, status=board.stage("Signing").kommo_id)

    gate_evaluations_run(account_id=board.account.pk, client=kommo_client)

    assert [request.method for request in kommo.requests] == ["GET"]


def test_only_the_moves_without_a_fresh_copy_are_read_in_one_call(board, legal_gate, kommo_client, kommo):
    fresh_lead, stale_lead = board.lead("Fresh"), board.lead("Stale")
    fresh_change, stale_change = board.move(fresh_lead, "Signing"), board.move(stale_lead, "Signing")
    mirrored(board, fresh_lead, stage="Signing", fetched_at=REPORTED)
    mirrored(board, stale_lead, stage="Legal review", fetched_at=None)
    queue_from_webhook_batch(board, fresh_change)
    queue_from_webhook_batch(board, stale_change)
    in_kommo(kommo, stale_lead, status=board.stage("Signing").kommo_id)

    gate_evaluations_run(account_id=board.account.pk, client=kommo_client)

    [read] = kommo.requests
    assert read.url.endswith(f"filter%5Bid%5D%5B%5D={stale_lead.kommo_id}&limit=250")
    assert GateDecision.objects.filter(outcome=Outcome.BLOCKED).count() == 2


def claimed_move_to_signing(board, lead: Lead) -> list[WebhookEvent]:
    """A stored delivery of the deal's move Legal review → Signing, received at REPORTED, claimed."""
    item = {
        "id": str(lead.kommo_id),
        "status_id": str(board.stage("Signing").kommo_id),
        "old_status_id": str(board.stage("Legal review").kommo_id),
        "pipeline_id": str(lead.pipeline_kommo_id),
        "last_modified": str(int(NOW.timestamp())),
    }
    event = WebhookEvent.objects.create(
        account=board.account,
        body=encode_form({"leads": {"status": [item]}}),
        content_type="application/x-www-form-urlencoded",
        received_at=REPORTED,
    )
    return webhook_events_claim(event_id=event.pk, policy=Policy.current())


def refetched_at_signing(board, lead: Lead):  # type: ignore[no-untyped-def]
    """The batch's re-fetch: Kommo has the deal at Signing, read just after the report."""
    payload = types.Lead.from_api(kommo_lead(lead, status=board.stage("Signing").kommo_id))
    return lambda client, plan: Fetched(
        leads_asked_at=REPORTED + dt.timedelta(milliseconds=20), leads={lead.kommo_id: payload}
    )


def test_a_webhook_batchs_moves_are_evaluated_when_it_commits_not_by_a_scheduled_task(board, legal_gate):
    lead = board.lead()
    events = claimed_move_to_signing(board, lead)
    written: list[bool] = []
    with (
        mock.patch("apps.flows.webhooks.webhook_refetch", refetched_at_signing(board, lead)),
        mock.patch("apps.flows.gates.evaluate_pending.apply_async") as schedule,
        mock.patch("apps.flows.webhooks.gates_run_now") as enforce,
    ):
        # not before the batch is written: its move and its events' outcome are there when it runs
        enforce.side_effect = lambda **kwargs: written.append(
            WebhookEvent.objects.filter(status=WebhookEvent.Status.PROCESSED).exists()
        )
        webhook_batch(events, Policy.current(), mock.Mock())

    change = StageChange.objects.get(lead=lead)
    assert written == [True]
    enforce.assert_called_once_with(account_id=board.account.pk, client=mock.ANY)
    schedule.assert_not_called()
    assert GateEvaluation.objects.get().fresh_after == REPORTED
    assert GateEvaluation.objects.get().stage_change == change


def test_a_failed_evaluation_at_the_end_of_the_batch_leaves_the_moves_to_the_task(board, legal_gate):
    lead = board.lead()
    events = claimed_move_to_signing(board, lead)
    with (
        mock.patch("apps.flows.webhooks.webhook_refetch", refetched_at_signing(board, lead)),
        mock.patch("apps.flows.webhooks.gates_run_now", side_effect=RuntimeError("database gone")),
        mock.patch("apps.flows.gates.evaluate_pending.apply_async") as schedule,
    ):
        webhook_batch(events, Policy.current(), mock.Mock())  # logs, never raises into webhook processing

    schedule.assert_called_once_with((board.account.pk,), countdown=mock.ANY)
    assert GateEvaluation.objects.get().status == GateEvaluation.Status.PENDING
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.PROCESSED
