"""Extra sections of a deal's page, supplied by the apps above this one.

The deal page belongs to stakeholders, but what a gate still needs is the gates' knowledge, and stakeholders
must not import gates. So an app above registers a provider at start-up; the page asks every provider
for its section and includes the ones it gets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from apps.kommo.models import Lead
from apps.stakeholders.models import Stakeholder


@dataclass(frozen=True)
class DealPanel:
    template: str
    context: dict[str, Any] = field(default_factory=dict)


DealPanelProvider = Callable[[Lead, Sequence[Stakeholder]], DealPanel | None]

_providers: list[DealPanelProvider] = []


def deal_panel_register(provider: DealPanelProvider) -> None:
    if provider not in _providers:
        _providers.append(provider)


def deal_panels_for(*, deal: Lead, stakeholders: Sequence[Stakeholder]) -> list[DealPanel]:
    panels = (provider(deal, stakeholders) for provider in _providers)
    return [panel for panel in panels if panel is not None]
