"""What the apps above this one add to the managers' pages: sections of a deal's page, and filters and
flags of the deal list.

The deal pages belong to stakeholders, but what a gate still needs, which deals a gate holds back or which
deals are stuck are the knowledge of gates and reports, and stakeholders must not import them. So an app
above registers a provider at start-up (in its ``AppConfig.ready``); the pages ask every provider and use
what they get.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet

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


@dataclass(frozen=True)
class DealListFilter:
    """A yes/no filter of the deal list: ``name`` is its query parameter, ``label`` what the manager reads,
    ``narrow`` keeps the deals it means (a queryset in, a queryset out: it must stay one query). ``note``,
    when given, takes the person's deals (unfiltered) and answers a few words shown beside the filter, e.g.
    how old the figures it reads are ("" for none); it runs once per page and must stay a few queries."""

    name: str
    label: str
    narrow: Callable[[QuerySet[Lead]], QuerySet[Lead]]
    note: Callable[[QuerySet[Lead]], str] | None = None


@dataclass(frozen=True)
class DealListFlags:
    """Badges on the deal list's rows: ``flags`` takes the page's deals and answers, per deal pk, the words to
    show (``{}`` for none); it reads all the page's deals at once."""

    name: str
    flags: Callable[[Sequence[Lead]], dict[int, list[str]]]


_list_filters: dict[str, DealListFilter] = {}
_list_flags: dict[str, DealListFlags] = {}


def deal_list_filter_register(deal_filter: DealListFilter) -> None:
    _list_filters[deal_filter.name] = deal_filter


def deal_list_filters() -> list[DealListFilter]:
    return list(_list_filters.values())


def deal_list_filter_notes(deals: QuerySet[Lead]) -> dict[str, str]:
    """Per filter name, what the filters with a ``note`` say beside themselves about ``deals``."""
    notes = {item.name: item.note(deals) for item in _list_filters.values() if item.note is not None}
    return {name: note for name, note in notes.items() if note}


def deal_list_flags_register(flags: DealListFlags) -> None:
    _list_flags[flags.name] = flags


def deal_list_flags_for(deals: Sequence[Lead]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {deal.pk: [] for deal in deals}
    for provider in _list_flags.values():
        for pk, words in provider.flags(deals).items():
            found.setdefault(pk, []).extend(words)
    return found
