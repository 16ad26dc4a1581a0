"""Who wrote the mirror: a manager's page, webhook processing, a sync, intake, the portal.

The mirror's upserts do not know why they run, and need not: what follows a write (the stakeholders
derived again, their history recorded) is given to them by the caller, and the caller knows. Each data
path says who it is by passing a :class:`Provenance` to what records the history (the stakeholders'
services), as a required argument: the webhook batch, the sync and the events sweep, intake
(``apps.flows``), a manager's page (``apps.stakeholders.views``). The types live at the boundary so that the
flows and the apps above share them without an import pointing up.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class MirrorSource(StrEnum):
    MANAGER = "manager"  # a person on the portal's pages
    WEBHOOK = "webhook"  # a Kommo edit, told by a webhook
    SYNC = "sync"  # a Kommo edit, found by a sync, the events sweep or the history backfill
    INTAKE = "intake"  # the lead intake API
    PORTAL = "portal"  # the portal on its own (no path records it today)


@dataclass(frozen=True)
class Provenance:
    source: MirrorSource
    user_id: int | None = None  # the portal user, for changes made on the portal's pages
