"""A task added to a deal in the Kommo sandbox, then completed, reaches the portal's mirror by webhook: the
deal's ``closest_task_at`` (what the stuck-deals report reads as "has an open task") follows."""

from __future__ import annotations

import time

from apps.kommo.models import Lead
from apps.stakeholders.bootstrap import WEBHOOK_SETTINGS
from tests.kommo.sandbox_support import account_subscribed, sandbox_api
from tests.support.marks import REAL_SERVERS
from tests.support.services import wait_for

pytestmark = REAL_SERVERS


def test_a_task_added_then_completed_on_a_deal_in_kommo_sets_then_clears_its_open_task_in_the_mirror(
    webhook_portal, webhook_sandbox, start_worker
) -> None:
    start_worker()
    account = account_subscribed(webhook_sandbox, WEBHOOK_SETTINGS)
    [lead] = sandbox_api(webhook_sandbox, "POST", "/api/v4/leads", [{"name": "Task probe", "price": 5000}])[
        "_embedded"
    ]["leads"]
    deadline = int(time.time()) + 3 * 86400

    [created] = sandbox_api(
        webhook_sandbox,
        "POST",
        "/api/v4/tasks",
        [
            {
                "text": "Call the lawyer",
                "complete_till": deadline,
                "entity_id": lead["id"],
                "entity_type": "leads",
            }
        ],
    )["_embedded"]["tasks"]

    def open_task_at() -> object:
        row = Lead.objects.filter(account=account, kommo_id=lead["id"]).first()
        return row.raw.get("closest_task_at", "absent") if row is not None else "absent"

    wait_for(
        lambda: open_task_at() == deadline, timeout=90, message="the task's deadline to reach the mirror"
    )

    sandbox_api(
        webhook_sandbox,
        "PATCH",
        "/api/v4/tasks",
        [{"id": created["id"], "is_completed": True, "result": {"text": "ok"}}],
    )
    wait_for(lambda: open_task_at() is None, timeout=90, message="the completed task to clear it")
