"""A batch of Kommo's webhook deliveries, from the stored rows to the writes back to Kommo.

The webhook task (``apps.kommo.tasks.webhook_process``) runs :func:`webhook_events_process`: the Kommo
boundary claims the events waiting for the account, a batch at a time, keeps the claims alive and gives
each batch to :func:`webhook_batch`, which reads top to bottom as the data path.
"""

from __future__ import annotations

import logging

from django.db import transaction

from apps.flows.gates import gates_run_now, gates_run_soon
from apps.gates.services import stage_changes_gate_intake
from apps.kommo.client import KommoClient
from apps.kommo.models import WebhookEvent
from apps.kommo.provenance import MirrorSource, Provenance
from apps.kommo.webhooks.processing import (
    BatchResult,
    Policy,
    ProcessOutcome,
    webhook_batch_failed,
    webhook_batch_processed,
    webhook_batch_read,
    webhook_events_run,
    webhook_mirror_write,
    webhook_moves_record,
    webhook_refetch,
)
from apps.stakeholders.services import stakeholders_derive_for_mirror_changes, stakeholders_touch

logger = logging.getLogger(__name__)

# Who made what a batch brings: a Kommo user, in Kommo, told by a webhook.
WEBHOOK = Provenance(MirrorSource.WEBHOOK)


def webhook_events_process(*, event_id: int) -> ProcessOutcome:
    """Processes the events waiting for ``event_id``'s account, batch by batch (the task's service)."""
    return webhook_events_run(event_id=event_id, step=webhook_batch)


def webhook_batch(events: list[WebhookEvent], policy: Policy, client: KommoClient) -> BatchResult:
    """One claimed batch. Every failure is recorded on its events, none escapes (see
    ``webhook_batch_failed``); the gates' own failure leaves the moves queued for their task."""
    # Parse: each body into what to re-fetch and which moves and touches it reports. An unreadable body
    # fails its event alone; one the portal has nothing to do with is ignored.
    work = webhook_batch_read(events)
    if work is None:
        return BatchResult()
    account = work.account
    try:
        # Re-fetch what the bodies name, after they arrived: the copy every write below is made from.
        fetched = webhook_refetch(client, work.plan)
        with transaction.atomic():
            # Upsert the mirror: deals, contacts, companies, catalog elements, the deletions Kommo confirms.
            written = webhook_mirror_write(account, work.plan, fetched)
            # Derive the stakeholders of the deals whose rows changed; notes, calls, messages touch them.
            stakeholders_derive_for_mirror_changes(
                account=account,
                lead_ids=written.lead_ids,
                contact_ids=written.contact_ids,
                catalog_element_ids=written.catalog_element_ids,
                provenance=WEBHOOK,
            )
            if work.plan.touches:
                stakeholders_touch(account=account, touches=work.plan.touches, provenance=WEBHOOK)
            # Record the moves the deliveries report (the upsert inferred any other).
            moves = webhook_moves_record(work, fetched)
            # Queue the new moves for the gates, decidable on the mirror's copy fetched after the report.
            queued = stage_changes_gate_intake(
                moves=[(move.stage_change, move.received_at) for move in moves]
                + [(change, work.received_from) for change in written.new_stage_changes],
                fresh_after=work.reported_by,
            )
            webhook_batch_processed(work)
    except Exception as exc:
        return webhook_batch_failed(work, exc, policy=policy, client=client, step=webhook_batch)
    # Committed: evaluate the gates at once and send the moves back, tasks and notes that are due.
    if any(evaluation is not None for evaluation in queued):
        try:
            gates_run_now(account_id=account.pk, client=client)
        except Exception:
            logger.exception("gate evaluation after webhook events %s failed", [e.pk for e in work.events])
            gates_run_soon(account_id=account.pk)
    return BatchResult()
