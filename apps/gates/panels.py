"""What the gates add to the managers' pages: on a deal's page, why it was moved back and the gates still
ahead with what each still needs; on the deal list, the filter "Moved back by a gate" and its badge."""

from __future__ import annotations

from collections.abc import Sequence

from apps.gates.selectors import (
    deals_blocked_by_a_gate,
    gate_flags_for_deals,
    gate_moves_back_for_lead,
    gates_ahead_for_lead,
)
from apps.kommo.models import Lead
from apps.stakeholders.models import Stakeholder
from apps.stakeholders.panels import DealListFilter, DealListFlags, DealPanel


def gates_deal_panel(deal: Lead, stakeholders: Sequence[Stakeholder]) -> DealPanel | None:
    gates = gates_ahead_for_lead(lead=deal, stakeholders=stakeholders)
    if not gates:
        return None
    return DealPanel(template="gates/deal_panel.html", context={"gates": gates})


def gates_moved_back_panel(deal: Lead, stakeholders: Sequence[Stakeholder]) -> DealPanel | None:
    moves = gate_moves_back_for_lead(lead=deal)
    if not moves:
        return None
    return DealPanel(template="gates/moved_back_panel.html", context={"moves": moves, "placement": "top"})


BLOCKED_FILTER = DealListFilter(name="blocked", label="Moved back by a gate", narrow=deals_blocked_by_a_gate)
BLOCKED_FLAGS = DealListFlags(name="gates", flags=gate_flags_for_deals)
