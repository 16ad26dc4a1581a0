"""The gates' section of a deal's page: the gates still ahead of the deal and what each still needs."""

from __future__ import annotations

from collections.abc import Sequence

from apps.gates.selectors import gates_ahead_for_lead
from apps.kommo.models import Lead
from apps.stakeholders.models import Stakeholder
from apps.stakeholders.panels import DealPanel


def gates_deal_panel(deal: Lead, stakeholders: Sequence[Stakeholder]) -> DealPanel | None:
    gates = gates_ahead_for_lead(lead=deal, stakeholders=stakeholders)
    if not gates:
        return None
    return DealPanel(template="gates/deal_panel.html", context={"gates": gates})
