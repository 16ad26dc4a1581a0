"""Signals of the Kommo boundary that apps above it may listen to, so that the boundary need not import
them. The mirror's writers send none: what follows a write is the caller's, given to them as ``follow``
(see :mod:`apps.kommo.services.mirror`).

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

field_changes_seen = Signal()
touches_seen = Signal()
