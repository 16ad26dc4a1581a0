"""Stage limits with the broker stopped: a real Redis stopped and started again, a real worker, the Kommo
sandbox over HTTP, PostgreSQL. Nothing the checks wrote is lost, and what they could not queue goes out
once Redis is back: one task per deal and level in Kommo."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from apps.escalations.models import Escalation, HeadOfSales, StageLimit
from apps.escalations.tasks import check_account, check_limits
from apps.flows.gates import sweep as gates_sweep_task
from apps.flows.sync import mirror_follow
from apps.gates.models import GateRule
from apps.gates.services import SWEEP_AFTER, gate_rules_install_defaults
from apps.kommo.models import KommoAccount, KommoUser, Lead, OutboundChange, Status, WebhookEvent
from apps.kommo.services.sync import mirror_sync
from apps.stakeholders.bootstrap import account_bootstrap
from kommo_sandbox.server import SandboxServer
from tests.escalations.test_end_to_end import escalation_tasks
from tests.factories import KommoAccountFactory, StatusFactory
from tests.kommo.sandbox_support import account_for
from tests.support.marks import END_TO_END
from tests.support.services import CeleryWorker, RedisServer, wait_for

pytestmark = END_TO_END


def test_escalations_written_while_redis_is_stopped_are_kept_and_sent_once_it_is_back(
    demo: SandboxServer,
    own_redis: RedisServer,
    worker_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account: KommoAccount = account_for(demo)
    account_bootstrap(account=account, public_url="http://127.0.0.1:9")
    mirror_sync(account=account, follow=mirror_follow)
    gate_rules_install_defaults(account=account, mode=GateRule.Mode.ENFORCE)
    legal = Status.objects.get(account=account, name="Legal review", pipeline__name__icontains="b2b")
    deals = list(Lead.objects.filter(account=account, status=legal, is_deleted=False))
    assert deals, "the demo seed has deals in Legal review"
    HeadOfSales.objects.create(
        account=account, kommo_user=KommoUser.objects.get(account=account, name="Dana Whitfield")
    )
    StageLimit.objects.create(status=legal, limit_days=Decimal("0.1"), second_limit_days=Decimal("0.2"))
    # Webhook deliveries of the account wait to be processed: the check's tasks are held until it is calm
    # (apps/kommo/services/outbound.py), so the check queues a flush for them instead of sending them.
    backlog = WebhookEvent.objects.create(account=account, body=b"leads[status][0][id]=1")
    worker = CeleryWorker(
        broker_url=own_redis.url,
        database_url=worker_database_url,
        extra_env={"CELERY_VISIBILITY_TIMEOUT": "2"},
    )
    try:
        worker.start(timeout=120)
        own_redis.stop()

        # The beat's fan-out cannot queue a check: it fails as a whole and writes nothing. Nothing is lost:
        # a check derives the escalations from the stays, and the next beat (every few minutes) runs it.
        with pytest.raises(BrokerError):
            check_limits()
        assert not Escalation.objects.exists()

        # A check that was already running on a worker: it writes its escalations and their tasks, then
        # cannot queue the flush that is to send them.
        with pytest.raises(BrokerError):
            check_account(account.pk)
        written = Escalation.objects.filter(account=account).count()
        assert written == 2 * len(deals)
        waiting = OutboundChange.objects.filter(account=account, status=OutboundChange.Status.PENDING)
        assert waiting.count() == written
        assert not any(escalation_tasks(demo, deal.kommo_id) for deal in deals)

        own_redis.start()  # the same port: the broker is back
        backlog.delete()  # the deliveries were processed meanwhile
        # What beat runs every minute: the gates' sweep finds the tasks nobody is sending, once they have
        # waited past its SWEEP_AFTER (a minute: travelled here), and queues a flush for their account.
        with time_machine.travel(timezone.now() + SWEEP_AFTER + dt.timedelta(seconds=1)):
            gates_sweep_task()
        # Sent, not merely claimed: a flush still between its request and its answer when the worker stops
        # would leave them "sending" (the suite under load met it).
        unsent = OutboundChange.objects.filter(account=account).exclude(status=OutboundChange.Status.SENT)
        wait_for(
            lambda: not unsent.exists(),
            timeout=60,
            message=f"the worker to send the escalations' tasks\n{worker.log()}",
        )
        # And the beat's next fan-out, now queued, finds nothing more to escalate.
        check_limits()
        wait_for(
            lambda: (
                "apps.escalations.tasks.check_account" in worker.log()
                and "succeeded" in worker.log().split("apps.escalations.tasks.check_account", 1)[1]
            ),
            timeout=60,
            message=f"the beat's check after the outage\n{worker.log()}",
        )
    finally:
        worker.stop()

    for deal in deals:
        tasks = escalation_tasks(demo, deal.kommo_id)
        assert sorted(task["text"].split("[portal escalation ")[1][0] for task in tasks) == ["1", "2"], tasks
    assert Escalation.objects.filter(account=account).count() == written
    assert set(OutboundChange.objects.filter(account=account).values_list("status", flat=True)) == {
        OutboundChange.Status.SENT
    }


def test_the_beats_fan_out_goes_on_past_a_check_it_cannot_queue(
    own_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    accounts = [KommoAccountFactory(name=name) for name in ("Acme", "Globex", "Initech")]
    for account in accounts:
        StageLimit.objects.create(status=StatusFactory(pipeline__account=account), limit_days=Decimal("2"))
    own_redis.stop()

    # Every account's check is tried, each failure logged; the run still fails as a whole at the end.
    with caplog.at_level(logging.WARNING, logger="apps.core.broker"), pytest.raises(BrokerError):
        check_limits()

    not_queued = [record.getMessage() for record in caplog.records if "not queued" in record.getMessage()]
    assert [message.split(": OperationalError")[0] for message in not_queued] == [
        f"broker: stage limits: the check of account {pk} not queued"
        for pk in sorted(account.pk for account in accounts)
    ]
