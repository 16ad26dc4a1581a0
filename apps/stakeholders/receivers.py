"""Keeps the stakeholder table in step with the mirror's other writers (connected in
``StakeholdersConfig.ready``); webhook processing's flow derives them itself (``apps.flows.webhooks``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from apps.kommo.models import KommoAccount
from apps.stakeholders.services import (
    stakeholders_derive_for_mirror_changes,
    stakeholders_history_from_field_changes,
    stakeholders_touch,
)


def stakeholders_rederive_on_mirror_change(
    sender: Any,
    *,
    account: KommoAccount,
    lead_ids: Iterable[int] = (),
    contact_ids: Iterable[int] = (),
    catalog_element_ids: Iterable[int] = (),
    **kwargs: Any,
) -> None:
    """Re-derive the deals that the changed deals, contacts and catalog elements belong to."""
    stakeholders_derive_for_mirror_changes(
        account=account, lead_ids=lead_ids, contact_ids=contact_ids, catalog_element_ids=catalog_element_ids
    )


def stakeholders_history_on_field_changes(
    sender: Any, *, account: KommoAccount, changes: Any, **kwargs: Any
) -> None:
    """Past changes of contacts' and elements' fields (the history backfill) date the people's history."""
    stakeholders_history_from_field_changes(account=account, changes=changes)


def stakeholders_touch_on_touches_seen(
    sender: Any, *, account: KommoAccount, touches: Any, **kwargs: Any
) -> None:
    """Notes, calls and meetings the events sweep saw touch the people behind them."""
    stakeholders_touch(account=account, touches=touches)
