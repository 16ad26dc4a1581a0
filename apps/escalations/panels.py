"""What the stage limits add to a deal's page (apps/stakeholders/panels.py): its time in the stage
against the limits, and the escalations with their tasks."""

from __future__ import annotations

from collections.abc import Sequence

from apps.escalations.selectors import deal_limits
from apps.kommo.models import Lead
from apps.stakeholders.models import Stakeholder
from apps.stakeholders.panels import DealPanel


def escalations_deal_panel(deal: Lead, stakeholders: Sequence[Stakeholder]) -> DealPanel | None:
    limits = deal_limits(lead=deal)
    if limits is None:
        return None
    return DealPanel(template="escalations/deal_panel.html", context={"limits": limits})
