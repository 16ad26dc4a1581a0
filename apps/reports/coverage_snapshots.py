"""Weekly decision-maker coverage snapshots: the current week's taken from the deals as they stand (beat),
and the weeks before the first one rebuilt from the stage stays (``reports_coverage_backfill``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.gates import semantics
from apps.kommo.models import KommoAccount, StageStay
from apps.reports.models import CoverageSnapshot
from apps.reports.selectors.coverage import coverage_groups
from apps.stakeholders.models import Approval, Role, StakeholderEvent
from apps.stakeholders.selectors import StakeholderHistory, decision_makers_since, stakeholder_history

GROUP = ("pipeline_id", "pipeline_kommo_id", "status_id", "status_kommo_id", "responsible_user_kommo_id")
STAY_GROUP = (
    "pipeline_id",
    "pipeline_kommo_id",
    "status_id",
    "status_kommo_id",
    "lead__responsible_user_kommo_id",
)
# The stakeholder history's fields the coverage reads (who joins and leaves is always read).
COVERAGE_FIELDS = (
    StakeholderEvent.Field.ROLE,
    StakeholderEvent.Field.APPROVAL_STATUS,
    StakeholderEvent.Field.APPROVAL_DECIDED_AT,
)


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


def _open_stays(account: KommoAccount, end: dt.datetime) -> QuerySet[StageStay]:
    """The stays of the deals open at ``end``: entered before it and left after it, in an open stage."""
    return (
        StageStay.objects.filter(account=account, entered_at__lt=end, lead__is_deleted=False)
        .filter(Q(left_at__isnull=True) | Q(left_at__gte=end))
        .exclude(status_kommo_id__in=semantics.CLOSED_STATUS_IDS)
        .order_by()
    )


def _snapshot_row(
    account: KommoAccount, week: dt.date, group: tuple[Any, ...], counts: dict[str, Any]
) -> CoverageSnapshot:
    pipeline_id, pipeline_kommo_id, status_id, status_kommo_id, user = group
    return CoverageSnapshot(
        account=account,
        week=week,
        taken_at=week_end(week),
        pipeline_id=pipeline_id,
        pipeline_kommo_id=pipeline_kommo_id or 0,
        status_id=status_id,
        status_kommo_id=status_kommo_id,
        responsible_user_kommo_id=user or 0,
        backfilled=True,
        **counts,
    )


def _backfill_week_from_creation(account: KommoAccount, week: dt.date) -> list[CoverageSnapshot]:
    """Without a stakeholder history: a deal has a decision maker from the day one of its decision makers'
    contact or catalog element was created in Kommo; approvals are not known."""
    end = week_end(week)
    dm_since = decision_makers_since(account=account).filter(lead_id=OuterRef("lead_id")).values("first")
    no_dm = Q(dm_since__isnull=True) | Q(dm_since__gte=end)
    rows = (
        _open_stays(account, end)
        .annotate(dm_since=Subquery(dm_since))
        .values(*STAY_GROUP)
        .annotate(
            deals=Count("lead_id"),
            value=Coalesce(Sum("lead__price"), 0),
            without_dm=Count("lead_id", filter=no_dm),
            without_dm_value=Coalesce(Sum("lead__price", filter=no_dm), 0),
        )
    )
    return [
        _snapshot_row(
            account,
            week,
            tuple(row[key] for key in STAY_GROUP),
            {
                "deals": row["deals"],
                "value": row["value"],
                "without_dm": row["without_dm"],
                "without_dm_value": row["without_dm_value"],
                "dm_approved": None,
                "dm_approved_value": None,
            },
        )
        for row in rows
    ]


def _backfill_week_from_history(
    account: KommoAccount, week: dt.date, people: StakeholderHistory, deciders: set[int]
) -> list[CoverageSnapshot]:
    """From the stakeholder history: the people on each open deal at the end of the week, with the role and
    approval they had then (``deciders``: the roles marked decision maker)."""
    end = week_end(week)
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in _open_stays(account, end).values(*STAY_GROUP, "lead_id", "lead__price"):
        group = tuple(row[key] for key in STAY_GROUP)
        counts = groups.setdefault(
            group,
            dict.fromkeys(
                ("deals", "value", "without_dm", "without_dm_value", "dm_approved", "dm_approved_value"), 0
            ),
        )
        price = row["lead__price"] or 0
        deciding = [person for person in people.state_at(row["lead_id"], end) if person.role_id in deciders]
        counts["deals"] += 1
        counts["value"] += price
        if not deciding:
            counts["without_dm"] += 1
            counts["without_dm_value"] += price
        if any(person.approval_status == Approval.APPROVED for person in deciding):
            counts["dm_approved"] += 1
            counts["dm_approved_value"] += price
    return [_snapshot_row(account, week, group, counts) for group, counts in groups.items()]


def coverage_snapshots_backfill(
    *, account: KommoAccount, weeks: int, now: dt.datetime | None = None, replace: bool = False
) -> list[tuple[dt.date, int]]:
    """Fill the ``weeks`` completed weeks before this one from the stage stays and, when the account has
    one, the stakeholder history (who was on each deal then, in which role, with which approval; without
    it, decision makers count from their contacts' creation and approvals are not known). A week that
    already has a snapshot taken live is left alone; one that was backfilled before is rebuilt only with
    ``replace`` (so running it again writes nothing new). Returns (week, rows written) for each week
    written."""
    now = now or timezone.now()
    this_week = week_start(now)
    have = dict(
        CoverageSnapshot.objects.filter(account=account)
        .values("week")
        .annotate(live=Count("pk", filter=Q(backfilled=False)))
        .values_list("week", "live")
    )
    people = None
    if StakeholderEvent.objects.filter(account=account).exists():
        people = stakeholder_history(account=account, until=week_end(this_week), fields=COVERAGE_FIELDS)
    deciders = set(Role.objects.filter(is_decision_maker=True).values_list("pk", flat=True))
    written = []
    for back in range(weeks, 0, -1):
        week = this_week - dt.timedelta(weeks=back)
        if week in have and (have[week] or not replace):
            continue
        rows = (
            _backfill_week_from_history(account, week, people, deciders)
            if people is not None
            else _backfill_week_from_creation(account, week)
        )
        with transaction.atomic():
            count = _replace(account, week, rows)
        written.append((week, count))
    return written
