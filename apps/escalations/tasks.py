"""Celery tasks of the stage time limits (queue ``kommo``): thin — call one service, then schedule the
outbound flush for what is left."""

from __future__ import annotations

from functools import partial

from celery import shared_task

from apps.core.broker import publish_all
from apps.escalations.services import account_ids_with_limits, escalations_enforce
from apps.kommo.tasks import outbound_flush_schedule
from apps.kommo.webhooks.processing import webhook_backlog


@shared_task(name="apps.escalations.tasks.check_limits", ignore_result=True)
def check_limits() -> None:
    """Beat: one check per account with stage time limits. A check that cannot be queued (the broker is
    down) is logged and the fan-out goes on to the other accounts (``publish_all``); the next beat checks
    every account again (a check derives the escalations from the stays)."""
    publish_all(
        (partial(check_account.delay, account_id), f"stage limits: the check of account {account_id}")
        for account_id in account_ids_with_limits()
    )


@shared_task(name="apps.escalations.tasks.check_account", ignore_result=True)
def check_account(account_id: int) -> None:
    """Escalate the account's deals past their stage's limits and send the tasks that are due; the rest
    go out with the account's next planned flush (the gates' sweeper picks up what a lost task left)."""
    run = escalations_enforce(account_id=account_id, backlog=webhook_backlog(account_id=account_id))
    if run.flush_in is not None:
        outbound_flush_schedule(account_id=account_id, delay=run.flush_in)
