"""Signals the mirror sends, so that apps above the Kommo boundary can follow it without the boundary
importing them.

``mirror_changed`` is sent after an upsert really changed mirrored rows, with the keyword arguments
``account`` (the :class:`~apps.kommo.models.KommoAccount`) and ``lead_ids``, ``contact_ids``,
``catalog_element_ids``: local primary keys of the deals, contacts and catalog elements that changed
(each a possibly empty collection). Receivers run inside the sender's transaction.

``stage_changed`` is sent when :func:`~apps.kommo.services.mirror.stage_change_record` creates a new
:class:`~apps.kommo.models.StageChange` (not when another source reports a move already recorded), with
the keyword arguments ``stage_change`` and ``batch``; whatever the source (webhook, sync, events, gate).
Receivers run inside the sender's transaction. ``batch`` is None, or the
:class:`~apps.kommo.services.mirror.StageChangeBatch` the move was recorded in: its writer re-fetched the
deals after the moves were reported and sends ``stage_changes_committed`` once its transaction commits.

``stage_changes_committed`` is sent by such a writer (webhook processing) after its transaction committed,
with the keyword argument ``batch`` (its moves, the account, and when the last of them was reported).
Receivers run in the writer's process, outside any transaction; the writer ignores their errors (it sends
with ``send_robust``), so a receiver must leave its work findable by other means if it fails.

``activity_seen`` is sent by webhook processing when a batch reported notes, calls or messages added to
deals or contacts, with the keyword arguments ``account`` and ``touches`` (a sequence of
:class:`~apps.kommo.webhooks.dispatch.Touch`: entity ``lead`` or ``contact``, its Kommo id, when). Receivers
run inside the writer's transaction, after the batch's upserts.

``field_changes_seen`` is sent by the history backfill with the past changes of contacts' and catalog
elements' custom fields it read from Kommo's events, with the keyword arguments ``account`` and ``changes``
(a sequence of :class:`~apps.kommo.types.FieldChange`). Receivers run inside the backfill's transaction, after
the mirror holds those contacts and elements; the same change may be sent again (a resumed or repeated
backfill), so a receiver must be idempotent.
"""

from django.dispatch import Signal

mirror_changed = Signal()
stage_changed = Signal()
stage_changes_committed = Signal()
activity_seen = Signal()
field_changes_seen = Signal()
