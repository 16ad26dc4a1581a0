"""Helpers of the mirror and sync tests: an account row and typed payloads built from recorded ones."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from apps.kommo import types
from apps.kommo.models import KommoAccount
from tests.factories import KommoAccountFactory
from tests.kommo.payloads import payload


def account_create(name: str = "Acme", base_url: str = "https://acme.kommo.com") -> KommoAccount:
    return KommoAccountFactory(name=name, base_url=base_url)


def lead_payload(**changes: Any) -> dict[str, Any]:
    """The recorded ``GET /leads/{id}?with=contacts,catalog_elements`` answer with ``changes`` applied;
    ``updated_at`` may be given as a datetime."""
    data = copy.deepcopy(payload("lead-get-response.json"))
    for key, value in changes.items():
        data[key] = int(value.timestamp()) if isinstance(value, dt.datetime) else value
    return data


def lead(**changes: Any) -> types.Lead:
    return types.Lead.from_api(lead_payload(**changes))


def at(seconds: int) -> dt.datetime:
    """A moment relative to the recorded lead's ``updated_at``."""
    return dt.datetime.fromtimestamp(1590683337 + seconds, tz=dt.UTC)
