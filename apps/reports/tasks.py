"""Celery tasks of the reports (queue ``default``): thin — each calls one service."""

from __future__ import annotations

from celery import shared_task

from apps.kommo.models import KommoAccount
from apps.reports.coverage_snapshots import coverage_snapshot_take
from apps.reports.export.stuck import stuck_states_refresh
from apps.reports.forecast_snapshots import forecast_snapshot_take


@shared_task(name="apps.reports.tasks.coverage_snapshot", ignore_result=True)
def coverage_snapshot() -> int:
    """This week's decision-maker coverage snapshot of every account (beat): the week's rows are replaced,
    so running it again within the week adds nothing. Returns the rows written."""
    return sum(
        coverage_snapshot_take(account=account) for account in KommoAccount.objects.order_by("pk").iterator()
    )


@shared_task(name="apps.reports.tasks.forecast_snapshot", ignore_result=True)
def forecast_snapshot() -> int:
    """This week's forecast snapshot of every account's pipelines (beat): the week's first run writes it,
    later runs find it there and write nothing. Returns the snapshots written."""
    return sum(
        forecast_snapshot_take(account=account) for account in KommoAccount.objects.order_by("pk").iterator()
    )


@shared_task(name="apps.reports.tasks.export_stuck_refresh", ignore_result=True)
def export_stuck_refresh() -> int:
    """The stuck-deals selector's answer for every account's open deals, for the BI export's ``stuck``
    columns (beat, every ``REPORTS_EXPORT_STUCK_MINUTES``). Returns the rows written."""
    return sum(
        stuck_states_refresh(account=account) for account in KommoAccount.objects.order_by("pk").iterator()
    )


@shared_task(name="apps.reports.tasks.stuck_refresh_account", ignore_result=True)
def stuck_refresh_account(account_id: int) -> int:
    """The stuck states of one account, queued by a page that found them stale or missing
    (:func:`apps.reports.export.stuck.stuck_refresh_queue`). Returns the rows whose codes changed."""
    account = KommoAccount.objects.filter(pk=account_id).first()
    if account is None:
        return 0
    return stuck_states_refresh(account=account)
