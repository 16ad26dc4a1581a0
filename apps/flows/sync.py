"""The sync, the events sweep and the history backfill: Kommo's listings and events log into the mirror,
each write followed, in its own transaction, by the stakeholders and the gates.

The Kommo boundary pages through Kommo (resumable, incremental by ``updated_at``, the events log from its
cursor) and writes each page in a transaction; what follows is given to it as parameters, called inside
that transaction:

* :func:`mirror_follow` (``follow``, every mirror writer's) derives the stakeholders of the deals whose
  deal, contacts or catalog elements changed and queues each new move for the gates (evaluated by their
  task once the write commits, a short window after the first, so that the moves a sync finds cost one
  re-read of their deals); intake's is the same follow-up made by intake (:func:`mirror_follow_as`);
* :func:`touches_follow` (the events sweep's ``touches_follow``) gives the stakeholders the notes, calls,
  completed meetings and e-mails the sweep read: their last touch;
* :func:`field_changes_follow` (the history backfill's ``field_changes_follow``) gives the stakeholders the
  past changes of contacts' and catalog elements' fields: their history, dated when it happened.

Each says who made the changes it hands over (:data:`SYNC`: Kommo's edits, found by reading Kommo), and
the stakeholders' history records it.
"""

from __future__ import annotations

from collections.abc import Sequence

from apps.flows.gates import gates_queue_move
from apps.kommo.models import KommoAccount
from apps.kommo.provenance import MirrorSource, Provenance
from apps.kommo.services.mirror import BatchResult, MirrorFollow
from apps.kommo.services.sync import events_reconcile, history_backfill, history_needed, mirror_sync
from apps.kommo.types import FieldChange
from apps.kommo.webhooks.dispatch import Touch
from apps.stakeholders.services import (
    stakeholders_follow,
    stakeholders_history_from_field_changes,
    stakeholders_touch,
)

# Who made what the sync, the events sweep, the history backfill and the admin's "Sync now" and resync
# find: a Kommo user, in Kommo, seen by reading Kommo (a webhook's flow says ``webhook``).
SYNC = Provenance(MirrorSource.SYNC)


def mirror_follow_as(provenance: Provenance) -> MirrorFollow:
    """What follows a mirror write made by ``provenance``, inside its transaction: the stakeholders of the
    deals whose deal, contacts or catalog elements changed are derived again (the history recording
    ``provenance``), and each new move is queued for the gates."""

    derive = stakeholders_follow(provenance)

    def follow(account: KommoAccount, result: BatchResult) -> None:
        derive(account, result)
        for change in result.new_stage_changes:
            gates_queue_move(stage_change=change)

    return follow


# What follows a write of the sync or the events sweep (and of the admin's "Sync now" and resync).
mirror_follow: MirrorFollow = mirror_follow_as(SYNC)


def touches_follow(account: KommoAccount, touches: Sequence[Touch]) -> None:
    """What follows the touches the events sweep read, inside its transaction: the people behind them were
    in touch then (webhook processing hands its own touches over in its flow)."""
    stakeholders_touch(account=account, touches=touches, provenance=SYNC)


def field_changes_follow(account: KommoAccount, changes: Sequence[FieldChange]) -> None:
    """What follows a page of past field changes the history backfill read, inside its transaction: the
    stakeholders' history rows, dated when the changes happened."""
    stakeholders_history_from_field_changes(account=account, changes=changes, provenance=SYNC)


def account_sync(*, account_id: int, full: bool = False) -> None:
    """Sync one account's mirror (incremental by ``updated_at``; ``full`` reads everything again), each
    page followed by the stakeholders and the gates; then backfill its stage history when that was never
    done or was interrupted (past moves: nothing follows them; past field changes date the stakeholders'
    history)."""
    account = KommoAccount.objects.get(pk=account_id)
    mirror_sync(account=account, full=full, follow=mirror_follow)
    if history_needed(account):
        history_backfill(account=account, field_changes_follow=field_changes_follow)


def account_events_sweep(*, account_id: int) -> None:
    """Repair one account's mirror from Kommo's events log: the moves with who made them, the deals they
    name re-fetched, deletions — each write followed by the stakeholders and the gates — and the touches
    it read (notes, calls, meetings, then e-mails) given to the stakeholders."""
    account = KommoAccount.objects.get(pk=account_id)
    events_reconcile(account=account, follow=mirror_follow, touches_follow=touches_follow)
