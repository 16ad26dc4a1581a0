"""The sync and the events sweep: Kommo's listings into the mirror, each write followed, in its own
transaction, by the stakeholders and the gates.

The Kommo boundary pages through Kommo (resumable, incremental by ``updated_at``, the events log from its
cursor) and writes each page in a transaction; what follows a write is given to it as ``follow``:
:func:`mirror_follow` derives the stakeholders of the deals whose deal, contacts or catalog elements
changed and queues each new move for the gates (evaluated by their task once the write commits, a short
window after the first, so that the moves a sync finds cost one re-read of their deals).
"""

from __future__ import annotations

from apps.flows.gates import gates_queue_move
from apps.kommo.models import KommoAccount
from apps.kommo.services.mirror import BatchResult
from apps.kommo.services.sync import events_reconcile, history_backfill, history_needed, mirror_sync
from apps.stakeholders.services import stakeholders_derive_for_mirror_changes


def mirror_follow(account: KommoAccount, result: BatchResult) -> None:
    """What follows a write of the sync or the events sweep, inside its transaction."""
    stakeholders_derive_for_mirror_changes(
        account=account,
        lead_ids=result.lead_ids,
        contact_ids=result.contact_ids,
        catalog_element_ids=result.catalog_element_ids,
    )
    for change in result.new_stage_changes:
        gates_queue_move(stage_change=change)


def account_sync(*, account_id: int, full: bool = False) -> None:
    """Sync one account's mirror (incremental by ``updated_at``; ``full`` reads everything again), each
    page followed by the stakeholders and the gates; then backfill its stage history when that was never
    done or was interrupted (past moves: nothing follows them)."""
    account = KommoAccount.objects.get(pk=account_id)
    mirror_sync(account=account, full=full, follow=mirror_follow)
    if history_needed(account):
        history_backfill(account=account)


def account_events_sweep(*, account_id: int) -> None:
    """Repair one account's mirror from Kommo's events log: the moves with who made them, the deals they
    name re-fetched, deletions — each write followed by the stakeholders and the gates."""
    account = KommoAccount.objects.get(pk=account_id)
    events_reconcile(account=account, follow=mirror_follow)
