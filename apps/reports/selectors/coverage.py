"""Decision-maker coverage: how many open deals have no identified decision maker, and how many have one
who approved — by count and by value, per stage and per manager, now and week by week.

- *Open deal*: a deal not deleted, in a stage that is neither won nor lost.
- *Decision maker identified*: at least one stakeholder of the deal holds a role marked "decision maker".
- *Decision maker approved*: at least one such stakeholder's approval is "approved".

The current figures are aggregated in SQL from the deals and their stakeholders (two ``EXISTS`` per deal,
one ``GROUP BY``); the weekly trend reads :class:`~apps.reports.models.CoverageSnapshot` rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from apps.gates import semantics
from apps.kommo.models import KommoAccount, KommoUser, Lead, Status
from apps.reports.models import CoverageSnapshot
from apps.stakeholders.models import Approval, Stakeholder


@dataclass(frozen=True)
class Coverage:
    """Coverage of one group of open deals (a stage, a manager, a week, or all)."""

    label: str
    deals: int
    value: int
    without_dm: int
    without_dm_value: int
    dm_approved: int | None
    dm_approved_value: int | None
    key: object = None

    @staticmethod
    def _share(part: int | None, whole: int) -> float | None:
        if part is None or not whole:
            return None
        return part / whole

    @property
    def without_dm_share(self) -> float | None:
        return self._share(self.without_dm, self.deals)

    @property
    def without_dm_value_share(self) -> float | None:
        return self._share(self.without_dm_value, self.value)

    @property
    def dm_approved_share(self) -> float | None:
        return self._share(self.dm_approved, self.deals)

    @property
    def dm_approved_value_share(self) -> float | None:
        return self._share(self.dm_approved_value, self.value)


def _decision_makers(**extra: object) -> QuerySet[Stakeholder]:
    return Stakeholder.objects.filter(lead=OuterRef("pk"), role__is_decision_maker=True, **extra)


def open_deals(*, account: KommoAccount | None, leads_qs: QuerySet[Lead] | None = None) -> QuerySet[Lead]:
    """The open deals of ``account`` (of every account when None) among ``leads_qs``."""
    leads = leads_qs if leads_qs is not None else Lead.objects.all()
    if account is not None:
        leads = leads.filter(account=account)
    return leads.filter(is_deleted=False).exclude(status_kommo_id__in=semantics.CLOSED_STATUS_IDS)


def coverage_groups(
    *, account: KommoAccount | None, leads_qs: QuerySet[Lead] | None = None, by: tuple[str, ...]
) -> list[dict[str, Any]]:
    """The open deals grouped by the columns ``by`` (e.g. ``("status_id",)``), each group with ``deals``,
    ``value``, ``without_dm``, ``without_dm_value``, ``dm_approved``, ``dm_approved_value``: one query."""
    deals = (
        open_deals(account=account, leads_qs=leads_qs)
        .order_by()
        .annotate(
            has_dm=Exists(_decision_makers()),
            dm_ok=Exists(_decision_makers(approval_status=Approval.APPROVED)),
        )
    )
    no_dm = Q(has_dm=False)
    ok = Q(dm_ok=True)
    return list(
        deals.values(*by).annotate(
            deals=Count("pk"),
            value=Coalesce(Sum("price"), 0),
            without_dm=Count("pk", filter=no_dm),
            without_dm_value=Coalesce(Sum("price", filter=no_dm), 0),
            dm_approved=Count("pk", filter=ok),
            dm_approved_value=Coalesce(Sum("price", filter=ok), 0),
        )
    )


def _coverage(label: str, row: Mapping[str, Any], key: object = None) -> Coverage:
    return Coverage(
        label=label,
        key=key,
        deals=int(row["deals"]),
        value=int(row["value"]),
        without_dm=int(row["without_dm"]),
        without_dm_value=int(row["without_dm_value"]),
        dm_approved=None if row["dm_approved"] is None else int(row["dm_approved"]),
        dm_approved_value=None if row["dm_approved_value"] is None else int(row["dm_approved_value"]),
    )


def _total(label: str, parts: Iterable[Coverage]) -> Coverage:
    parts = list(parts)
    approved = [part.dm_approved for part in parts]
    approved_value = [part.dm_approved_value for part in parts]
    return Coverage(
        label=label,
        deals=sum(part.deals for part in parts),
        value=sum(part.value for part in parts),
        without_dm=sum(part.without_dm for part in parts),
        without_dm_value=sum(part.without_dm_value for part in parts),
        dm_approved=None if None in approved else sum(a or 0 for a in approved),
        dm_approved_value=None if None in approved_value else sum(a or 0 for a in approved_value),
    )


def coverage_by_stage(
    *, account: KommoAccount | None, leads_qs: QuerySet[Lead] | None = None
) -> list[Coverage]:
    """Per stage, in pipeline then stage order (named with their pipeline when the deals span several)."""
    rows = coverage_groups(account=account, leads_qs=leads_qs, by=("status_id",))
    stages = Status.objects.select_related("pipeline").in_bulk([row["status_id"] for row in rows])
    several = len({status.pipeline_id for status in stages.values()}) > 1
    found = []
    for row in rows:
        status = stages.get(row["status_id"])
        if status is None:
            label, order = "unknown stage", (1 << 30, 0, 0)
        else:
            label = f"{status.pipeline.name} / {status.name}" if several else status.name
            order = (status.pipeline.sort, status.pipeline.kommo_id, status.sort)
        found.append((order, _coverage(label, row, key=row["status_id"])))
    return [coverage for _, coverage in sorted(found, key=lambda item: item[0])]


def coverage_by_manager(
    *, account: KommoAccount | None, leads_qs: QuerySet[Lead] | None = None
) -> list[Coverage]:
    """Per responsible manager, by name."""
    rows = coverage_groups(account=account, leads_qs=leads_qs, by=("responsible_user_kommo_id",))
    users = KommoUser.objects.filter(kommo_id__in=[row["responsible_user_kommo_id"] for row in rows])
    if account is not None:
        users = users.filter(account=account)
    names = dict(users.values_list("kommo_id", "name"))
    found = [
        _coverage(
            names.get(row["responsible_user_kommo_id"])
            or (
                "nobody"
                if row["responsible_user_kommo_id"] is None
                else f"user {row['responsible_user_kommo_id']}"
            ),
            row,
            key=row["responsible_user_kommo_id"],
        )
        for row in rows
    ]
    return sorted(found, key=lambda coverage: coverage.label.casefold())


def coverage_total(parts: Iterable[Coverage]) -> Coverage:
    return _total("All open deals", parts)


def coverage_trend(
    *,
    account: KommoAccount | None,
    since: dt.date,
    until: dt.date,
    pipeline_kommo_ids: Iterable[int] | None = None,
    responsible_user_kommo_ids: Iterable[int] | None = None,
) -> list[Coverage]:
    """Week by week (the weeks starting between ``since`` and ``until``, both included), from the snapshots
    of ``account`` (of every account when None): one row per week that has any. A week whose approvals
    are not known (backfilled) has ``dm_approved`` None."""
    snapshots = CoverageSnapshot.objects.filter(week__gte=since, week__lte=until)
    if account is not None:
        snapshots = snapshots.filter(account=account)
    if pipeline_kommo_ids is not None:
        snapshots = snapshots.filter(pipeline_kommo_id__in=list(pipeline_kommo_ids))
    if responsible_user_kommo_ids is not None:
        snapshots = snapshots.filter(responsible_user_kommo_id__in=list(responsible_user_kommo_ids))
    sums = ("deals", "value", "without_dm", "without_dm_value", "dm_approved", "dm_approved_value")
    rows = (
        snapshots.order_by()
        .values("week")
        .annotate(
            unknown=Count("pk", filter=Q(dm_approved__isnull=True)),
            **{f"sum_{name}": Coalesce(Sum(name), 0) for name in sums},
        )
        .order_by("week")
    )
    found = []
    for summed in rows:
        values: dict[str, Any] = dict(summed)
        row: dict[str, Any] = {name: values[f"sum_{name}"] for name in sums}
        if values["unknown"]:
            row.update(dm_approved=None, dm_approved_value=None)
        week: dt.date = values["week"]
        found.append(_coverage(f"{week:%Y-%m-%d}", row, key=week))
    return found
