"""Keeps the stakeholder table in step with the mirror's other writers (connected in
``StakeholdersConfig.ready``); webhook processing's flow derives them itself (``apps.flows.webhooks``)."""

from __future__ import annotations

from typing import Any

from apps.kommo.models import KommoAccount
from apps.stakeholders.services import (
    stakeholders_history_from_field_changes,
    stakeholders_touch,
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
