"""Weekly decision-maker coverage snapshots: the current week's taken from the deals as they stand (beat),
and the weeks before the first one rebuilt from the stage stays (``reports_coverage_backfill``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Count, DateTimeField, Min, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.gates import semantics
from apps.kommo.models import KommoAccount, StageStay
from apps.reports.models import CoverageSnapshot
from apps.reports.selectors.coverage import coverage_groups
from apps.stakeholders.models import Stakeholder

GROUP = ("pipeline_id", "pipeline_kommo_id", "status_id", "status_kommo_id", "responsible_user_kommo_id")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def week_start(moment: dt.datetime) -> dt.date:
    """The Monday of ``moment``'s week, in the portal's time zone."""
    day = timezone.localtime(moment).date()
    return day - dt.timedelta(days=day.weekday())


def week_end(week: dt.date) -> dt.datetime:
    """The moment a week ends: the next Monday at midnight, in the portal's time zone."""
    monday = week + dt.timedelta(days=7)
    return timezone.make_aware(dt.datetime.combine(monday, dt.time()))


def _replace(account: KommoAccount, week: dt.date, rows: Iterable[CoverageSnapshot]) -> int:
    CoverageSnapshot.objects.filter(account=account, week=week).delete()
    return len(CoverageSnapshot.objects.bulk_create(list(rows)))


def coverage_snapshot_take(*, account: KommoAccount, now: dt.datetime | None = None) -> int:
    """Replace this week's snapshot of ``account`` with the open deals as they stand: idempotent within
    the week (the last run of a week is what the week keeps). Returns the number of rows written."""
    now = now or timezone.now()
    week = week_start(now)
    groups = coverage_groups(account=account, by=GROUP)
    with transaction.atomic():
        KommoAccount.objects.select_for_update().filter(pk=account.pk).first()  # one writer per account
        return _replace(
            account,
            week,
            (
                CoverageSnapshot(
                    account=account,
                    week=week,
                    taken_at=now,
                    pipeline_id=row["pipeline_id"],
                    pipeline_kommo_id=row["pipeline_kommo_id"],
                    status_id=row["status_id"],
                    status_kommo_id=row["status_kommo_id"],
                    responsible_user_kommo_id=row["responsible_user_kommo_id"] or 0,
                    deals=row["deals"],
                    value=row["value"],
                    without_dm=row["without_dm"],
                    without_dm_value=row["without_dm_value"],
                    dm_approved=row["dm_approved"],
                    dm_approved_value=row["dm_approved_value"],
                )
                for row in groups
            ),
        )


def _backfill_week(account: KommoAccount, week: dt.date) -> list[CoverageSnapshot]:
    """The deals open at the end of ``week`` (by their stays), in the stage they were in then, with a
    decision maker when one of their decision makers' contact or catalog element existed by then."""
    end = week_end(week)
    dm_since = (
        Stakeholder.objects.filter(lead=OuterRef("lead_id"), role__is_decision_maker=True)
        .annotate(
            since=Coalesce(
                "contact__created_at",
                "catalog_element__created_at",
                Value(EPOCH, output_field=DateTimeField()),
            )
        )
        .order_by()
        .values("lead_id")
        .annotate(first=Min("since"))
        .values("first")
    )
    stays = (
        StageStay.objects.filter(account=account, entered_at__lt=end, lead__is_deleted=False)
        .filter(Q(left_at__isnull=True) | Q(left_at__gte=end))
        .exclude(status_kommo_id__in=semantics.CLOSED_STATUS_IDS)
        .annotate(dm_since=Subquery(dm_since))
        .order_by()
    )
    no_dm = Q(dm_since__isnull=True) | Q(dm_since__gte=end)
    rows = stays.values(
        "pipeline_id", "pipeline_kommo_id", "status_id", "status_kommo_id", "lead__responsible_user_kommo_id"
    ).annotate(
        deals=Count("lead_id"),
        value=Coalesce(Sum("lead__price"), 0),
        without_dm=Count("lead_id", filter=no_dm),
        without_dm_value=Coalesce(Sum("lead__price", filter=no_dm), 0),
    )
    return [
        CoverageSnapshot(
            account=account,
            week=week,
            taken_at=end,
            pipeline_id=row["pipeline_id"],
            pipeline_kommo_id=row["pipeline_kommo_id"] or 0,
            status_id=row["status_id"],
            status_kommo_id=row["status_kommo_id"],
            responsible_user_kommo_id=row["lead__responsible_user_kommo_id"] or 0,
            deals=row["deals"],
            value=row["value"],
            without_dm=row["without_dm"],
            without_dm_value=row["without_dm_value"],
            dm_approved=None,
            dm_approved_value=None,
            backfilled=True,
        )
        for row in rows
    ]


def coverage_snapshots_backfill(
    *, account: KommoAccount, weeks: int, now: dt.datetime | None = None, replace: bool = False
) -> list[tuple[dt.date, int]]:
    """Fill the ``weeks`` completed weeks before this one from the stage stays. A week that already has
    a snapshot taken live is left alone; one that was backfilled before is rebuilt only with ``replace``
    (so running it again writes nothing new). Returns (week, rows written) for each week written."""
    now = now or timezone.now()
    this_week = week_start(now)
    have = dict(
        CoverageSnapshot.objects.filter(account=account)
        .values("week")
        .annotate(live=Count("pk", filter=Q(backfilled=False)))
        .values_list("week", "live")
    )
    written = []
    for back in range(weeks, 0, -1):
        week = this_week - dt.timedelta(weeks=back)
        if week in have and (have[week] or not replace):
            continue
        with transaction.atomic():
            count = _replace(account, week, _backfill_week(account, week))
        written.append((week, count))
    return written
