"""The gates' board (a B2B pipeline in the mirror, a manager and a head of sales, a Kommo client answered
by the fake Kommo), with deals whose stays are derived as the mirror derives them, and stage limits."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from apps.escalations.models import HeadOfSales, StageLimit
from apps.kommo.models import Lead
from apps.kommo.services.stays import leads_stays_refresh
from tests.gates.conftest import NOW, Board, board, kommo, kommo_client  # noqa: F401 (the gates' fixtures)

T0 = NOW - dt.timedelta(days=30)  # when the deals of these tests were created


def deal(on: Board, name: str = "Acme renewal", stage: str = "Legal review", **fields: Any) -> Lead:
    """A deal created at ``T0`` in ``stage``, with its stays derived (one open stay since ``T0``)."""
    fields.setdefault("created_at", T0)
    lead = on.lead(name, stage, **fields)
    leads_stays_refresh(lead_ids=[lead.pk])
    return lead


def move(on: Board, lead: Lead, to: str, at: dt.datetime) -> None:
    """A recorded move, with the stays derived again as the mirror does."""
    on.move(lead, to, at=at)
    leads_stays_refresh(lead_ids=[lead.pk])


def limit(on: Board, stage: str = "Legal review", first: str = "10", second: str | None = "20") -> StageLimit:
    return StageLimit.objects.create(
        status=on.stage(stage),
        limit_days=Decimal(first),
        second_limit_days=Decimal(second) if second is not None else None,
    )


@pytest.fixture
def head(board: Board) -> HeadOfSales:  # noqa: F811 (the fixture above)
    return HeadOfSales.objects.create(account=board.account, kommo_user=board.head_of_sales)
