"""The beats' fan-outs with the broker stopped: every account's task is tried, each failure logged, and the
run fails as a whole at the end (the next beat derives the same work again)."""

from __future__ import annotations

import logging

import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError

from apps.flows.gates import sweep
from apps.flows.tasks import sync_events, sync_incremental
from apps.gates.services import SWEEP_AFTER
from apps.kommo.models import OutboundChange
from tests.factories import KommoAccountFactory
from tests.support.services import RedisServer

pytestmark = pytest.mark.django_db


def not_queued(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage().split(": OperationalError")[0]
        for record in caplog.records
        if record.name == "apps.core.broker" and "not queued" in record.getMessage()
    ]


@pytest.mark.parametrize(
    ("beat", "what"),
    [(sync_incremental, "the incremental sync"), (sync_events, "the events sweep")],
)
def test_the_sync_beats_try_every_account_with_the_broker_stopped(
    beat,  # type: ignore[no-untyped-def]
    what: str,
    own_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    accounts = [KommoAccountFactory(name=name, connected=True) for name in ("Acme", "Globex", "Initech")]
    own_redis.stop()

    with caplog.at_level(logging.WARNING, logger="apps.core.broker"), pytest.raises(OperationalError):
        beat()

    assert not_queued(caplog) == [
        f"broker: sync: {what} of account {account.pk} not queued" for account in accounts
    ]


def test_the_gates_sweeper_tries_every_evaluation_and_flush_with_the_broker_stopped(
    own_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    accounts = [KommoAccountFactory(name=name) for name in ("Acme", "Globex")]
    for n, account in enumerate(accounts):
        row = OutboundChange.objects.create(
            account=account,
            kind=OutboundChange.Kind.LEAD_STATUS,
            entity_kommo_id=n,
            payload={"status_id": 4004},
            idempotency_key=f"gate:move:{n}",
        )
        OutboundChange.objects.filter(pk=row.pk).update(modified=timezone.now() - SWEEP_AFTER * 2)
    own_redis.stop()

    with caplog.at_level(logging.WARNING, logger="apps.core.broker"), pytest.raises(OperationalError):
        sweep()

    assert not_queued(caplog) == [
        f"broker: gates: the outbound flush of account {account.pk} not queued" for account in accounts
    ]
