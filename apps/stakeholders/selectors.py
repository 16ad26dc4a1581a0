"""Reads of the stakeholder table for gates, pages and reports."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from django.db.models import DateTimeField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from apps.kommo.models.mirror import Contact, Lead, LeadContact, StageChange
from apps.stakeholders.models import Approval, Role, Stakeholder
from apps.users.models import User


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
