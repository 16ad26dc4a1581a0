"""Signals the mirror sends when its writer was given no ``follow`` (what follows a write, from the caller
above the boundary: ``apps.flows``), so that apps above the Kommo boundary can follow it without the
boundary importing them. The flows give one: webhook processing (``nothing_follows``: its flow derives the
stakeholders and hands the new moves to the gates in plain calls), the sync and the events sweep
(``mirror_follow``). The others — the admin's resync, ``kommo_sync``, intake, the managers' edits — rely on
these signals.

``mirror_changed`` is sent after an upsert really changed mirrored rows, with the keyword arguments
``account`` (the :class:`~apps.kommo.models.KommoAccount`) and ``lead_ids``, ``contact_ids``,
``catalog_element_ids``: local primary keys of the deals, contacts and catalog elements that changed
(each a possibly empty collection). Receivers run inside the sender's transaction.

``stage_changed`` is sent when :func:`~apps.kommo.services.mirror.stage_change_record` creates a new
:class:`~apps.kommo.models.StageChange` (not when another source reports a move already recorded), with
the keyword argument ``stage_change``, whatever the source (sync, events, the gate's own move). Receivers
run inside the sender's transaction.

``field_changes_seen`` is sent by the history backfill with the past changes of contacts' and catalog
elements' custom fields it read from Kommo's events, with the keyword arguments ``account`` and ``changes``
(a sequence of :class:`~apps.kommo.types.FieldChange`). Receivers run inside the backfill's transaction, after
the mirror holds those contacts and elements; the same change may be sent again (a resumed or repeated
backfill), so a receiver must be idempotent.

``touches_seen`` is sent by the events sweep with the notes, calls, SMS and completed meetings on deals and
contacts it read from Kommo's events, and the e-mails it read from their notes, with the keyword arguments
``account`` and ``touches`` (a sequence of :class:`~apps.kommo.webhooks.dispatch.Touch`). Receivers run inside
the sweep's transaction; webhook processing hands the same touches to the stakeholders in a plain call, so a
touch may arrive both ways.
"""

from django.dispatch import Signal

mirror_changed = Signal()
stage_changed = Signal()
field_changes_seen = Signal()
touches_seen = Signal()
