"""Reads of the stakeholder table for gates, pages and reports."""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import DateTimeField, Min, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.kommo.models import KommoAccount
from apps.kommo.models.mirror import Contact, Lead, LeadContact, StageChange
from apps.stakeholders.models import (
    APPROVAL_EXPIRED,
    Approval,
    FieldMapping,
    Role,
    Stakeholder,
    StakeholderEvent,
    approval_expiry,
    objection_is_open,
)
from apps.users.models import User

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _stakeholders() -> QuerySet[Stakeholder]:
    return Stakeholder.objects.select_related("role", "contact", "catalog_element").order_by(
        "lead_id", "role__sort", "name", "id"
    )


def stakeholders_for_lead(*, lead: Lead) -> list[Stakeholder]:
    """The stakeholders of one deal, by role order then name (role, contact and element loaded)."""
    return list(_stakeholders().filter(lead=lead))


def stakeholders_for_leads(*, lead_ids: Collection[int]) -> dict[int, list[Stakeholder]]:
    """The stakeholders of several deals (local Lead pks) in one query: lead pk → list; every requested
    deal is a key, with an empty list when it has none."""
    found: dict[int, list[Stakeholder]] = {lead_id: [] for lead_id in lead_ids}
    for row in _stakeholders().filter(lead_id__in=lead_ids):
        found[row.lead_id].append(row)
    return found


@dataclass(frozen=True)
class StakeholderSummary:
    """What a deal list shows about a deal's stakeholders."""

    roles: tuple[Role, ...]
    approvals: dict[str, int]
    has_decision_maker: bool
    count: int


def stakeholders_summary(stakeholders: list[Stakeholder]) -> StakeholderSummary:
    roles: dict[int, Role] = {}
    approvals = {choice.value: 0 for choice in Approval}
    for row in stakeholders:
        if row.role is not None:
            roles.setdefault(row.role.pk, row.role)
        approvals[row.approval_status] += 1
    ordered = tuple(sorted(roles.values(), key=lambda role: (role.sort, role.pk)))
    return StakeholderSummary(
        roles=ordered,
        approvals=approvals,
        has_decision_maker=any(role.is_decision_maker for role in ordered),
        count=len(stakeholders),
    )


def user_sees_all_deals(user: User) -> bool:
    """Sales ops and the head of sales see every deal; a manager only the deals they are responsible for."""
    if user.is_superuser:
        return True
    return user.in_group(User.Group.SALES_OPS, User.Group.HEAD_OF_SALES)


def deals_for_user(*, user: User) -> QuerySet[Lead]:
    """The deals (not deleted) a signed-in person may see, newest change first, stage loaded."""
    deals = Lead.objects.filter(is_deleted=False).select_related("status", "pipeline", "responsible_user")
    if not user_sees_all_deals(user):
        if user.kommo_user_id is None:
            return deals.none()
        deals = deals.filter(responsible_user_kommo_id=user.kommo_user_id)
    return deals.order_by("-updated_at", "-id")


def deals_with_stage_entry(deals: QuerySet[Lead]) -> QuerySet[Lead]:
    """``deals`` annotated with ``stage_entered_at``: when each entered the stage it is in (its latest
    recorded move into it), else when it was created; company and account loaded for the list."""
    entered = (
        StageChange.objects.filter(lead=OuterRef("pk"), to_status_kommo_id=OuterRef("status_kommo_id"))
        .order_by("-at")
        .values("at")[:1]
    )
    return deals.select_related("company", "account").annotate(
        stage_entered_at=Coalesce(Subquery(entered, output_field=DateTimeField()), "created_at")
    )


def kommo_deal_url(deal: Lead) -> str:
    """The deal's page in Kommo's own interface."""
    return f"{deal.account.api_root}/leads/detail/{deal.kommo_id}"


def contacts_without_stakeholder(*, lead: Lead) -> list[Contact]:
    """The deal's contacts (not deleted) that are no stakeholder of it yet, main contact first."""
    taken = Stakeholder.objects.filter(lead=lead, contact__isnull=False).values("contact_id")
    return [
        link.contact
        for link in LeadContact.objects.filter(lead=lead, contact__is_deleted=False)
        .exclude(contact_id__in=taken)
        .exclude(contact__isnull=True)
        .select_related("contact")
        .order_by("-is_main", "contact__name", "id")
        if link.contact is not None
    ]


def stage_history_for_lead(*, lead: Lead) -> list[StageChange]:
    return list(
        StageChange.objects.filter(lead=lead)
        .select_related("from_status", "to_status", "moved_by")
        .order_by("-at", "-id")
    )


# -- history -----------------------------------------------------------------------------------------------


@dataclass
class StakeholderState:
    """One stakeholder of a deal as the history says they were at some moment (see
    :func:`stakeholder_state_as_of`). ``approval_status`` is Kommo's (``unknown`` when it held none); use
    :meth:`approval_state` for the expiry."""

    stakeholder_id: int
    lead_id: int
    name: str = ""
    role_id: int | None = None
    approval_status: str = Approval.UNKNOWN
    approval_requested_at: dt.datetime | None = None
    approval_decided_at: dt.datetime | None = None
    last_touch: dt.datetime | None = None
    objection: str = ""
    objection_weight: Decimal | None = None
    objection_raised_at: dt.datetime | None = None
    objection_resolved_at: dt.datetime | None = None

    @property
    def objection_open(self) -> bool:
        return objection_is_open(
            text=self.objection, weight=self.objection_weight, resolved_at=self.objection_resolved_at
        )

    def approval_state(self, *, when: dt.datetime, valid_days: int | None) -> str:
        """``expired`` when the approval was given more than ``valid_days`` (the role's) before ``when``."""
        expires = approval_expiry(
            approval=self.approval_status, decided_at=self.approval_decided_at, valid_days=valid_days
        )
        return APPROVAL_EXPIRED if expires is not None and expires <= when else self.approval_status


def _history_decode(field: str, value: Any) -> Any:
    if value is None:
        return "" if field == StakeholderEvent.Field.OBJECTION else None
    if field.endswith("_at") or field == StakeholderEvent.Field.LAST_TOUCH:
        return dt.datetime.fromisoformat(value)
    if field == StakeholderEvent.Field.OBJECTION_WEIGHT:
        return Decimal(value)
    return value


_STATE_ATTRIBUTES: dict[str, str] = {
    StakeholderEvent.Field.ROLE: "role_id",
    StakeholderEvent.Field.APPROVAL_STATUS: "approval_status",
    StakeholderEvent.Field.APPROVAL_REQUESTED_AT: "approval_requested_at",
    StakeholderEvent.Field.APPROVAL_DECIDED_AT: "approval_decided_at",
    StakeholderEvent.Field.LAST_TOUCH: "last_touch",
    StakeholderEvent.Field.OBJECTION: "objection",
    StakeholderEvent.Field.OBJECTION_WEIGHT: "objection_weight",
    StakeholderEvent.Field.OBJECTION_RAISED_AT: "objection_raised_at",
    StakeholderEvent.Field.OBJECTION_RESOLVED_AT: "objection_resolved_at",
}


def stakeholder_state_as_of(
    *,
    when: dt.datetime,
    lead: Lead | None = None,
    lead_ids: Collection[int] | None = None,
    account: KommoAccount | None = None,
) -> dict[int, list[StakeholderState]]:
    """The stakeholders of one deal (``lead``), of several (``lead_ids``) or of every deal of an
    ``account``, as they were at ``when``: lead pk → the people on the deal then, in the order they
    joined. Read from the history alone (``StakeholderEvent`` rows with ``at ≤ when``), so it answers for
    any past day the history covers; a deal with nobody on it then is absent, except a requested ``lead`` /
    ``lead_ids``, which are keys with an empty list. The history begins when the portal first derived a
    deal's stakeholders: a person first seen then counts from the day Kommo created them, with the values
    from Kommo's last change of their objects (earlier values are not known)."""
    if lead is None and lead_ids is None and account is None:
        raise ValueError("give a lead, lead_ids or an account")
    if lead is not None:
        lead_ids = [lead.pk]
    found: dict[int, list[StakeholderState]] = {lead_id: [] for lead_id in lead_ids or ()}
    rows = _history_rows(account=account, lead_ids=lead_ids, until=when)
    found.update(_fold(rows))
    return found


_HistoryRow = tuple[dt.datetime, int, int, str, str, Any]  # at, stakeholder id, lead id, name, field, new


def _history_rows(
    *,
    account: KommoAccount | None,
    lead_ids: Collection[int] | None,
    until: dt.datetime | None = None,
    fields: Collection[str] | None = None,
) -> list[_HistoryRow]:
    events = StakeholderEvent.objects.all()
    if until is not None:
        events = events.filter(at__lte=until)
    if lead_ids is not None:
        events = events.filter(lead_id__in=lead_ids)
    if account is not None:
        events = events.filter(account=account)
    if fields is not None:
        events = events.filter(field__in={StakeholderEvent.Field.PRESENCE, *fields})
    return list(
        events.order_by("at", "id").values_list("at", "stakeholder_id", "lead_id", "name", "field", "new")
    )


def _fold(rows: Iterable[_HistoryRow]) -> dict[int, list[StakeholderState]]:
    """History rows in time order folded into the people on each deal after the last of them."""
    people: dict[int, StakeholderState] = {}
    present: dict[int, bool] = {}
    for _at, stakeholder_id, lead_id, name, field, new in rows:
        state = people.get(stakeholder_id)
        if state is None:
            state = people[stakeholder_id] = StakeholderState(stakeholder_id=stakeholder_id, lead_id=lead_id)
        if name:
            state.name = name
        if field == StakeholderEvent.Field.PRESENCE:
            present[stakeholder_id] = new is not None
            continue
        value = _history_decode(field, new)
        if field == StakeholderEvent.Field.APPROVAL_STATUS and value is None:
            value = Approval.UNKNOWN
        setattr(state, _STATE_ATTRIBUTES[field], value)
    found: dict[int, list[StakeholderState]] = {}
    for stakeholder_id, state in people.items():
        if present.get(stakeholder_id):
            found.setdefault(state.lead_id, []).append(state)
    return found


class StakeholderHistory:
    """The history of many deals read in one query, answering "who was on this deal at that moment" for
    any deal and moment in memory: what the reports need when every deal is asked about at a moment of
    its own (the forecast's cohort: when each deal left a stage) or every week of a year (the coverage
    backfill). The answers are :func:`stakeholder_state_as_of`'s."""

    def __init__(self, rows: Iterable[_HistoryRow]) -> None:
        self._rows: dict[int, list[_HistoryRow]] = {}
        for row in rows:
            self._rows.setdefault(row[2], []).append(row)
        self._times = {lead_id: [row[0] for row in found] for lead_id, found in self._rows.items()}
        # A deal's state changes only at its own rows: a fold is kept per deal and number of rows folded,
        # so asking about every week of a year folds each deal once per change, not once per week.
        self._folded: dict[tuple[int, int], list[StakeholderState]] = {}

    def __bool__(self) -> bool:
        return bool(self._rows)

    def covers(self, lead_id: int) -> bool:
        """Whether the history has any row of the deal (the portal derived it at least once)."""
        return bool(self._rows.get(lead_id))

    def state_at(self, lead_id: int, when: dt.datetime) -> list[StakeholderState]:
        """The people on the deal at ``when`` (the rows with ``at ≤ when``), in the order they joined. The
        answer is shared between callers asking about the same state: read it, do not change it."""
        rows = self._rows.get(lead_id)
        if not rows:
            return []
        cut = bisect.bisect_right(self._times[lead_id], when)
        found = self._folded.get((lead_id, cut))
        if found is None:
            found = self._folded[(lead_id, cut)] = _fold(rows[:cut]).get(lead_id, [])
        return found


def stakeholder_history(
    *,
    account: KommoAccount | None = None,
    lead_ids: Collection[int] | None = None,
    until: dt.datetime | None = None,
    fields: Collection[str] | None = None,
) -> StakeholderHistory:
    """The stakeholder history of an ``account``'s deals (or of ``lead_ids``), up to ``until``, in one
    query. ``fields`` (``StakeholderEvent.Field`` values) keeps only the changes the caller folds — the
    coverage reads roles and approvals, not the many last touches; who joins and leaves is always kept."""
    if account is None and lead_ids is None:
        raise ValueError("give an account or lead_ids")
    return StakeholderHistory(_history_rows(account=account, lead_ids=lead_ids, until=until, fields=fields))


def expected_close_field(*, account: KommoAccount) -> int | None:
    """The Kommo id of the deal date field that holds the account's expected close dates, when the field
    mappings name one (attribute *Expected close date*, source *Deal field*)."""
    return (
        FieldMapping.objects.filter(
            account=account,
            attribute=FieldMapping.Attribute.EXPECTED_CLOSE,
            source=FieldMapping.Source.LEAD_FIELD,
        )
        .values_list("field_id", flat=True)
        .first()
    )


def decision_makers_since(*, account: KommoAccount) -> QuerySet[Any, Any]:
    """Per deal of ``account`` (``lead_id``), since when it has a decision maker as far as the mirror alone
    can tell (``first``): the earliest creation in Kommo of a decision maker's contact or catalog element.
    For an account without a stakeholder history, whose roles are only known as they stand; the rows can be
    filtered by ``lead_id`` (also with ``OuterRef``) before reading ``first``."""
    return (
        Stakeholder.objects.filter(account=account, role__is_decision_maker=True)
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
    )


def stakeholder_timelines(*, lead: Lead) -> dict[int, list[StakeholderEvent]]:
    """Each person's history on the deal, newest first: stakeholder id → events (the user loaded)."""
    timelines: dict[int, list[StakeholderEvent]] = {}
    for event in StakeholderEvent.objects.filter(lead=lead).select_related("user").order_by("-at", "-id"):
        timelines.setdefault(event.stakeholder_id, []).append(event)
    return timelines


@dataclass(frozen=True)
class TimelineEntry:
    """One line of a person's timeline on the deal page."""

    at: dt.datetime
    what: str
    old: str
    new: str
    by: str


def _shown(field: str, value: Any, role_labels: dict[int, str]) -> str:
    if value is None or value == "":
        return "—"
    if field == StakeholderEvent.Field.ROLE:
        return role_labels.get(value, f"role {value}")
    if field == StakeholderEvent.Field.APPROVAL_STATUS:
        return str(Approval(value).label) if value in Approval.values else str(value)
    if field == StakeholderEvent.Field.LAST_TOUCH:
        moment = timezone.localtime(dt.datetime.fromisoformat(value))
        return f"{moment:%Y-%m-%d %H:%M}" if moment.time() != dt.time.min else f"{moment:%Y-%m-%d}"
    if field.endswith("_at"):
        return timezone.localtime(dt.datetime.fromisoformat(value)).date().isoformat()
    return str(value)


def timeline_entry(event: StakeholderEvent, role_labels: dict[int, str]) -> TimelineEntry:
    """An event in words: ``role_labels`` names the roles (pk → label)."""
    by = event.get_source_display()
    if event.user is not None:
        by = f"{event.user.get_full_name() or event.user.get_username()} ({by.lower()})"
    if event.field == StakeholderEvent.Field.PRESENCE:
        joined = event.new is not None
        return TimelineEntry(event.at, "joined the deal" if joined else "left the deal", "", "", by)
    return TimelineEntry(
        at=event.at,
        what=event.get_field_display(),
        old=_shown(event.field, event.old, role_labels),
        new=_shown(event.field, event.new, role_labels),
        by=by,
    )
