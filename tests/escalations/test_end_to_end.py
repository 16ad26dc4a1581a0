"""Stage limits end to end: the Kommo sandbox over HTTP, a real Celery worker on Redis and PostgreSQL,
and a check that died after committing (its tasks queued, none sent). The beat runs twice at once, the
worker is restarted, the beat runs again: each deal past the limits has exactly one task per level in
Kommo, the manager's and the head of sales'."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from apps.escalations.models import Escalation, HeadOfSales, StageLimit
from apps.escalations.services import escalations_check
from apps.escalations.tasks import check_account, check_limits
from apps.flows.sync import mirror_follow
from apps.gates.models import GateRule
from apps.gates.services import gate_rules_install_defaults
from apps.kommo.models import KommoAccount, KommoUser, Lead, OutboundChange, Status
from apps.kommo.services.sync import mirror_sync
from apps.stakeholders.bootstrap import account_bootstrap
from kommo_sandbox.server import SandboxServer
from tests.kommo.sandbox_support import account_for, sandbox_api
from tests.support.marks import END_TO_END
from tests.support.services import wait_for

pytestmark = END_TO_END


def escalation_tasks(sandbox: SandboxServer, lead_id: int) -> list[dict[str, Any]]:
    data = sandbox_api(
        sandbox, "GET", f"/api/v4/tasks?filter[entity_type]=leads&filter[entity_id][]={lead_id}"
    )
    tasks = (data or {}).get("_embedded", {}).get("tasks", [])
    return [task for task in tasks if "[portal escalation " in task["text"]]


def test_deals_past_their_limits_get_one_task_per_level_through_beats_and_a_worker_restart(
    demo: SandboxServer, start_worker: Any
) -> None:
    account: KommoAccount = account_for(demo)
    account_bootstrap(account=account, public_url="http://127.0.0.1:9")
    mirror_sync(account=account, follow=mirror_follow)
    gate_rules_install_defaults(account=account, mode=GateRule.Mode.ENFORCE)
    legal = Status.objects.get(account=account, name="Legal review", pipeline__name__icontains="b2b")
    deals = list(Lead.objects.filter(account=account, status=legal, is_deleted=False))
    assert deals, "the demo seed has deals in Legal review"
    head = KommoUser.objects.get(account=account, name="Dana Whitfield")
    HeadOfSales.objects.create(account=account, kommo_user=head)
    StageLimit.objects.create(status=legal, limit_days=Decimal("0.1"), second_limit_days=Decimal("0.2"))

    # A check ran and committed, then its worker died: the escalations and their tasks are queued, unsent.
    assert escalations_check(account_id=account.pk).escalated == 2 * len(deals)
    assert not any(escalation_tasks(demo, deal.kommo_id) for deal in deals)

    worker = start_worker()
    check_account.delay(account.pk)
    check_account.delay(account.pk)  # the beat's check twice at once (the worker runs two at a time)
    wait_for(
        lambda: (
            not OutboundChange.objects.filter(
                account=account, status__in=[OutboundChange.Status.PENDING, OutboundChange.Status.SENDING]
            ).exists()
        ),
        timeout=60,
        message="the tasks sent",
    )
    worker.stop()
    restarted = start_worker()
    check_limits.delay()
    wait_for(
        lambda: (
            "apps.escalations.tasks.check_account" in restarted.log()
            and "succeeded" in restarted.log().split("apps.escalations.tasks.check_account", 1)[1]
        ),
        timeout=60,
        message="the beat's check after the restart",
    )

    for deal in deals:
        tasks = escalation_tasks(demo, deal.kommo_id)
        assert sorted(task["text"].split("[portal escalation ")[1][0] for task in tasks) == ["1", "2"], tasks
        by_level = {task["text"].split("[portal escalation ")[1][0]: task for task in tasks}
        assert by_level["1"]["responsible_user_id"] == deal.responsible_user_kommo_id
        assert by_level["2"]["responsible_user_id"] == head.kommo_id
        assert "has been in Legal review for" in by_level["1"]["text"]
        assert deal.name in by_level["2"]["text"]
    assert Escalation.objects.filter(account=account).count() == 2 * len(deals)
    assert set(OutboundChange.objects.filter(account=account).values_list("status", flat=True)) == {
        OutboundChange.Status.SENT
    }
