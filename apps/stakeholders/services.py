"""Writes of the stakeholders app: deriving the stakeholder table from the mirror, and changing a
stakeholder's role, approval or last touch in Kommo."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.db.models import Prefetch, Q
from django.utils import timezone

from apps.core.locks import advisory_lock_if_free, advisory_lock_key
from apps.kommo.client import KommoClient
from apps.kommo.exceptions import KommoError, KommoValidationError
from apps.kommo.models import KommoAccount
from apps.kommo.models.mirror import CatalogElement, Contact, Lead, LeadCatalogElement, LeadContact
from apps.kommo.provenance import Provenance
from apps.kommo.services.mirror import (
    BatchResult,
    MirrorFollow,
    catalog_elements_upsert_from_kommo,
    contacts_upsert_from_kommo,
    leads_upsert_from_kommo,
)
from apps.kommo.types import (
    CatalogElementWrite,
    ContactWrite,
    FieldChange,
    FieldValueSeen,
    FieldValueWrite,
    LinkWrite,
)
from apps.stakeholders.derivation import (
    AttributeField,
    MappingSet,
    PartyInput,
    StakeholderFacts,
    merge_stakeholders,
)
from apps.stakeholders.models import Approval, FieldMapping, Role, Stakeholder, StakeholderEvent
from apps.stakeholders.wording import name_key

# Columns of a Stakeholder row that derivation owns; ``notes`` is the portal's and survives.
DERIVED_COLUMNS = (
    "contact_id",
    "catalog_element_id",
    "name",
    "role_id",
    "approval_status",
    "last_touch",
    "objection_weight",
    "source",
    "approval_requested_at",
    "approval_decided_at",
    "objection",
    "objection_raised_at",
    "objection_resolved_at",
)

# Column of a Stakeholder row → the history's field for it: every change of one of these is a row.
HISTORY_COLUMNS: dict[str, str] = {
    "role_id": StakeholderEvent.Field.ROLE,
    "approval_status": StakeholderEvent.Field.APPROVAL_STATUS,
    "approval_requested_at": StakeholderEvent.Field.APPROVAL_REQUESTED_AT,
    "approval_decided_at": StakeholderEvent.Field.APPROVAL_DECIDED_AT,
    "last_touch": StakeholderEvent.Field.LAST_TOUCH,
    "objection": StakeholderEvent.Field.OBJECTION,
    "objection_weight": StakeholderEvent.Field.OBJECTION_WEIGHT,
    "objection_raised_at": StakeholderEvent.Field.OBJECTION_RAISED_AT,
    "objection_resolved_at": StakeholderEvent.Field.OBJECTION_RESOLVED_AT,
}


def field_mappings_for_account(*, account: KommoAccount) -> MappingSet:
    mappings = FieldMapping.objects.filter(account=account).prefetch_related("values")
    return MappingSet.from_mappings(mappings)


def _facts_for_lead(lead: Lead, mappings: MappingSet) -> list[StakeholderFacts]:
    if lead.is_deleted:
        return []
    contacts = [
        PartyInput(
            pk=link.contact.pk,
            kommo_id=link.contact.kommo_id,
            name=link.contact.name,
            field_values=link.contact.field_values,
            linked_element_ids=link.contact.linked_element_ids,
        )
        for link in lead.contact_links.all()
        if link.contact is not None and not link.contact.is_deleted
    ]
    elements = [
        (
            PartyInput(
                pk=link.element.pk,
                kommo_id=link.element.kommo_id,
                name=link.element.name,
                field_values=link.element.field_values,
            ),
            link.element.catalog_kommo_id,
        )
        for link in lead.element_links.all()
        if link.element is not None and not link.element.is_deleted
    ]
    return merge_stakeholders(contacts=contacts, elements=elements, mappings=mappings)


def _row_values(facts: StakeholderFacts) -> dict[str, Any]:
    return {
        "contact_id": facts.contact_pk,
        "catalog_element_id": facts.element_pk,
        "name": facts.name[:255],
        "role_id": facts.role_id,
        "approval_status": facts.approval_status,
        "last_touch": facts.last_touch,
        "objection_weight": facts.objection_weight,
        "source": facts.source,
        "approval_requested_at": facts.approval_requested_at,
        "approval_decided_at": facts.approval_decided_at,
        "objection": facts.objection,
        "objection_raised_at": facts.objection_raised_at,
        "objection_resolved_at": facts.objection_resolved_at,
    }


def _fill_times(values: dict[str, Any], row: Stakeholder | None, at: dt.datetime) -> None:
    """The days Kommo's date fields leave empty, when a Kommo user changed the approval or the objection
    without them: the day the portal saw the change, kept as long as the state lasts."""
    approval = values["approval_status"]
    same_approval = row is not None and row.approval_status == approval
    if values["approval_requested_at"] is None:
        if approval == Approval.PENDING:
            values["approval_requested_at"] = row.approval_requested_at if same_approval and row else at
        elif approval != Approval.UNKNOWN and row is not None:
            # Decided since: the request's day (the portal's, when Kommo had none) stays.
            values["approval_requested_at"] = row.approval_requested_at
    if approval in (Approval.APPROVED, Approval.REJECTED) and values["approval_decided_at"] is None:
        values["approval_decided_at"] = row.approval_decided_at if same_approval and row else at
    stated = bool(values["objection"] or values["objection_weight"] is not None)
    if stated and values["objection_raised_at"] is None:
        had = row is not None and bool(row.objection or row.objection_weight is not None)
        values["objection_raised_at"] = row.objection_raised_at if had and row else at


def _history_value(value: object) -> object:
    """A column's value as the history's JSON keeps it."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value.normalize())
    if value == "":
        return None
    return value


@dataclass(frozen=True)
class _Seen:
    """When Kommo says the objects behind one stakeholder were created and last changed."""

    created: dt.datetime | None
    updated: dt.datetime | None


class _History:
    """The history rows one derivation writes, with their provenance."""

    def __init__(self, account: KommoAccount, provenance: Provenance) -> None:
        self.account = account
        self.source = provenance.source.value
        self.user_id = provenance.user_id
        self.now = timezone.now()
        self.rows: list[StakeholderEvent] = []
        self.pending: list[tuple[Stakeholder, str, object, object, dt.datetime]] = []

    def when(self, seen: _Seen) -> dt.datetime:
        """Kommo's last change of the person's objects (the contact's, the element's: the later), never
        after now (Kommo's clock may run ahead of ours)."""
        return min(seen.updated or self.now, self.now)

    def add(self, row: Stakeholder, field: str, old: object, new: object, at: dt.datetime) -> None:
        if field == StakeholderEvent.Field.LAST_TOUCH and isinstance(new, dt.datetime):
            at = min(max(at, new), self.now)  # a touch is known from the moment it happened, not before
        # Rows created in this derivation get their pk on insert: their events are completed then.
        self.pending.append((row, field, _history_value(old), _history_value(new), at))

    def write(self) -> None:
        rows = [
            StakeholderEvent(
                account=self.account,
                lead_id=row.lead_id,
                stakeholder_id=row.pk,
                name=row.name,
                field=field,
                old=old,
                new=new,
                at=at,
                source=self.source,
                user_id=self.user_id,
            )
            for row, field, old, new, at in self.pending
        ]
        if rows:
            StakeholderEvent.objects.bulk_create(rows)


def _sync_lead_rows(
    *,
    account: KommoAccount,
    lead: Lead,
    wanted: list[StakeholderFacts],
    existing: list[Stakeholder],
    seen: dict[tuple[int | None, int | None], _Seen],
    history: _History,
) -> tuple[list[Stakeholder], list[Stakeholder], list[int]]:
    """(rows to create, rows to update, pks to delete) that make ``existing`` say ``wanted``. A row is
    kept (with its notes) when it names the same contact, or else the same catalog element. Every change
    of an attribute is added to ``history``."""
    by_contact = {row.contact_id: row for row in existing if row.contact_id is not None}
    by_element = {row.catalog_element_id: row for row in existing if row.catalog_element_id is not None}
    used: set[int] = set()
    create: list[Stakeholder] = []
    update: list[Stakeholder] = []
    for facts in wanted:
        values = _row_values(facts)
        when = seen.get((facts.contact_pk, facts.element_pk), _Seen(None, None))
        row = by_contact.get(facts.contact_pk) if facts.contact_pk is not None else None
        if row is None or row.pk in used:
            candidate = by_element.get(facts.element_pk) if facts.element_pk is not None else None
            row = candidate if candidate is not None and candidate.pk not in used else None
        if row is None:
            at = history.when(when)
            _fill_times(values, None, at)
            new_row = Stakeholder(account=account, lead=lead, **values)
            create.append(new_row)
            joined = min(when.created, at) if when.created is not None else at
            history.add(new_row, StakeholderEvent.Field.PRESENCE, None, new_row.name or "—", joined)
            for column, field in HISTORY_COLUMNS.items():
                if values[column] not in (None, "", Approval.UNKNOWN):
                    history.add(new_row, field, None, values[column], at)
            continue
        used.add(row.pk)
        at = history.when(when)
        _fill_times(values, row, at)
        if row.activity_at is not None and (
            values["last_touch"] is None or row.activity_at > values["last_touch"]
        ):
            values["last_touch"] = row.activity_at
        if any(getattr(row, column) != value for column, value in values.items()):
            for column, field in HISTORY_COLUMNS.items():
                old = getattr(row, column)
                if old != values[column]:
                    history.add(row, field, old, values[column], at)
            for column, value in values.items():
                setattr(row, column, value)
            row.updated = timezone.now()
            update.append(row)
    delete = [row.pk for row in existing if row.pk not in used]
    for row in existing:
        if row.pk not in used:
            history.add(row, StakeholderEvent.Field.PRESENCE, row.name or "—", None, history.now)
    return create, update, delete


def _seen_for_lead(lead: Lead) -> dict[tuple[int | None, int | None], _Seen]:
    """(contact pk, element pk) → when Kommo created and last changed them, for every pair derivation may
    name: a contact alone, an element alone, or the two merged (the earliest creation, the latest change)."""
    contacts = {
        link.contact.pk: _Seen(link.contact.created_at, link.contact.updated_at)
        for link in lead.contact_links.all()
        if link.contact is not None
    }
    elements = {
        link.element.pk: _Seen(link.element.created_at, link.element.updated_at)
        for link in lead.element_links.all()
        if link.element is not None
    }
    seen: dict[tuple[int | None, int | None], _Seen] = {}
    for contact_pk, contact in contacts.items():
        seen[(contact_pk, None)] = contact
        for element_pk, element in elements.items():
            created = [moment for moment in (contact.created, element.created) if moment is not None]
            updated = [moment for moment in (contact.updated, element.updated) if moment is not None]
            seen[(contact_pk, element_pk)] = _Seen(
                min(created) if created else None, max(updated) if updated else None
            )
    for element_pk, element in elements.items():
        seen[(None, element_pk)] = element
    return seen


@transaction.atomic
def stakeholders_derive_for_leads(
    *, account: KommoAccount, lead_ids: Collection[int], provenance: Provenance
) -> bool:
    """Recompute the stakeholders of these deals (local Lead pks) from the mirror and the account's field
    mappings, and record every change in the history (``StakeholderEvent``) as made by ``provenance``
    (who wrote the mirror: the caller says). Returns whether any row was created, changed or removed."""
    if not lead_ids:
        return False
    mappings = field_mappings_for_account(account=account)
    leads = Lead.objects.filter(account=account, pk__in=lead_ids).prefetch_related(
        Prefetch(
            "contact_links", queryset=LeadContact.objects.select_related("contact").order_by("-is_main", "id")
        ),
        Prefetch(
            "element_links",
            queryset=LeadCatalogElement.objects.select_related("element")
            .filter(element__catalog_kommo_id__in=mappings.catalog_ids)
            .order_by("id"),
        ),
    )
    existing: dict[int, list[Stakeholder]] = {}
    for row in Stakeholder.objects.filter(lead_id__in=lead_ids).order_by("id"):
        existing.setdefault(row.lead_id, []).append(row)
    create: list[Stakeholder] = []
    update: list[Stakeholder] = []
    delete: list[int] = []
    history = _History(account, provenance)
    for lead in leads:
        rows = _sync_lead_rows(
            account=account,
            lead=lead,
            wanted=_facts_for_lead(lead, mappings),
            existing=existing.get(lead.pk, []),
            seen=_seen_for_lead(lead),
            history=history,
        )
        create += rows[0]
        update += rows[1]
        delete += rows[2]
    if delete:
        Stakeholder.objects.filter(pk__in=delete).delete()
    if update:
        # A row that moved from one identity to another may collide with a row still to be deleted or
        # created, so updates run after deletes and before creates.
        Stakeholder.objects.bulk_update(update, [*DERIVED_COLUMNS, "updated"])
    if create:
        Stakeholder.objects.bulk_create(create)
    history.write()
    return bool(create or update or delete)


def stakeholders_touch(*, account: KommoAccount, touches: Iterable[Any], provenance: Provenance) -> bool:
    """Notes, calls, e-mails, messages and completed meetings seen in Kommo (``Touch``: entity lead or
    contact, Kommo id, when) touch the people behind them: a contact's, its stakeholder rows on every deal;
    a deal's, the stakeholder who is the deal's main contact. Their last touch becomes the later of Kommo's
    field and this activity; the deals are re-derived, which records the change as made by ``provenance``.
    Returns whether any last touch moved."""
    latest: dict[int, dt.datetime] = {}  # Stakeholder pk → the latest activity
    by_contact: dict[int, dt.datetime] = {}
    by_lead: dict[int, dt.datetime] = {}
    for touch in touches:
        target = by_contact if touch.entity == "contact" else by_lead if touch.entity == "lead" else None
        if target is not None:
            target[touch.kommo_id] = max(touch.at, target.get(touch.kommo_id, touch.at))
    if by_contact:
        for pk, kommo_id in Stakeholder.objects.filter(
            account=account, contact__kommo_id__in=by_contact
        ).values_list("pk", "contact__kommo_id"):
            latest[pk] = max(by_contact[kommo_id], latest.get(pk, by_contact[kommo_id]))
    if by_lead:
        main = {
            (lead_id, contact_id): lead_kommo_id
            for lead_id, lead_kommo_id, contact_id in LeadContact.objects.filter(
                lead__account=account, lead__kommo_id__in=by_lead, is_main=True
            ).values_list("lead_id", "lead__kommo_id", "contact_id")
        }
        # The main contacts' stakeholder rows in one query, not one per deal.
        rows = Stakeholder.objects.filter(
            lead_id__in={lead_id for lead_id, _ in main},
            contact_id__in={contact_id for _, contact_id in main},
        ).values_list("pk", "lead_id", "contact_id")
        for pk, lead_id, contact_id in rows:
            lead_kommo_id = main.get((lead_id, contact_id))
            if lead_kommo_id is not None:
                latest[pk] = max(by_lead[lead_kommo_id], latest.get(pk, by_lead[lead_kommo_id]))
    moved: set[int] = set()
    for row in Stakeholder.objects.filter(pk__in=latest).only("pk", "lead_id", "activity_at"):
        at = min(latest[row.pk], timezone.now())
        if row.activity_at is None or at > row.activity_at:
            Stakeholder.objects.filter(pk=row.pk).update(activity_at=at)
            moved.add(row.lead_id)
    if moved:
        stakeholders_derive_for_leads(account=account, lead_ids=moved, provenance=provenance)
    return bool(moved)


def stakeholders_derive_for_mirror_changes(
    *,
    account: KommoAccount,
    lead_ids: Iterable[int] = (),
    contact_ids: Iterable[int] = (),
    catalog_element_ids: Iterable[int] = (),
    provenance: Provenance,
) -> bool:
    """Re-derive the deals that these changed deals, contacts and catalog elements (local pks) belong to:
    what follows every write of the mirror, made by ``provenance``. Returns whether any stakeholder
    changed."""
    touched = lead_ids_touched(
        account=account, lead_ids=lead_ids, contact_ids=contact_ids, catalog_element_ids=catalog_element_ids
    )
    return stakeholders_derive_for_leads(account=account, lead_ids=touched, provenance=provenance)


def lead_ids_touched(
    *,
    account: KommoAccount,
    lead_ids: Iterable[int] = (),
    contact_ids: Iterable[int] = (),
    catalog_element_ids: Iterable[int] = (),
) -> set[int]:
    """The deals (local pks) whose stakeholders may change when these deals, contacts and catalog
    elements changed: contacts and elements lead to their deals through the mirror's links."""
    found = set(lead_ids)
    contact_ids, catalog_element_ids = list(contact_ids), list(catalog_element_ids)
    if contact_ids:
        contacts = Contact.objects.filter(account=account, pk__in=contact_ids).values("kommo_id")
        found.update(
            LeadContact.objects.filter(lead__account=account, contact_kommo_id__in=contacts).values_list(
                "lead_id", flat=True
            )
        )
    if catalog_element_ids:
        elements = CatalogElement.objects.filter(account=account, pk__in=catalog_element_ids).values(
            "kommo_id"
        )
        found.update(
            LeadCatalogElement.objects.filter(
                lead__account=account, element_kommo_id__in=elements
            ).values_list("lead_id", flat=True)
        )
    return found


# -- changes made by a person in the portal, written to Kommo ----------------------------------------------


class StakeholderWriteError(Exception):
    """A change to a stakeholder could not be written to Kommo; the message says why, for the person who
    made it. ``permanent`` is False when trying again later may work (Kommo busy or unreachable)."""

    def __init__(self, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent


class _Keep:
    """A value a change leaves as it is."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()

# Attribute of a field mapping → the StakeholderChange field (and Stakeholder column) it holds.
CHANGE_FIELDS: dict[str, str] = {
    FieldMapping.Attribute.LAST_TOUCH: "last_touch",
    FieldMapping.Attribute.OBJECTION_WEIGHT: "objection_weight",
    FieldMapping.Attribute.APPROVAL_REQUESTED: "approval_requested_at",
    FieldMapping.Attribute.APPROVAL_DECIDED: "approval_decided_at",
    FieldMapping.Attribute.OBJECTION: "objection",
    FieldMapping.Attribute.OBJECTION_RAISED: "objection_raised_at",
    FieldMapping.Attribute.OBJECTION_RESOLVED: "objection_resolved_at",
}

# Days the portal keeps by itself when Kommo has no field for them (see _fill_times): not written when
# unmapped, rather than refused.
OPTIONAL_ATTRIBUTES = frozenset(
    {
        FieldMapping.Attribute.APPROVAL_REQUESTED,
        FieldMapping.Attribute.APPROVAL_DECIDED,
        FieldMapping.Attribute.OBJECTION_RAISED,
        FieldMapping.Attribute.OBJECTION_RESOLVED,
    }
)


@dataclass(frozen=True)
class StakeholderChange:
    """The attributes a person set; only those that differ from the stakeholder's are written. The
    approval's and the objection's days and the objection's text default to ``KEEP`` (left as they are)."""

    role: Role | None
    approval_status: str
    last_touch: dt.datetime | None
    objection_weight: Decimal | None = None
    approval_requested_at: dt.datetime | None = KEEP
    approval_decided_at: dt.datetime | None = KEEP
    objection: str = KEEP
    objection_raised_at: dt.datetime | None = KEEP
    objection_resolved_at: dt.datetime | None = KEEP

    @classmethod
    def of(cls, stakeholder: Stakeholder, **changes: Any) -> StakeholderChange:
        """A change of ``stakeholder`` that sets ``changes`` and leaves everything else as it is."""
        current: dict[str, Any] = {
            "role": stakeholder.role,
            "approval_status": stakeholder.approval_status,
            "last_touch": stakeholder.last_touch,
            "objection_weight": stakeholder.objection_weight,
        }
        return cls(**{**current, **changes})


def change_with_lifecycle(
    stakeholder: Stakeholder, change: StakeholderChange, now: dt.datetime
) -> StakeholderChange:
    """The days a change implies, unless it sets them itself: an approval asked for is requested now; one
    given or refused is decided now; an objection stated where none was open is raised now (and no longer
    resolved). A change of the approval or the objection is a touch: the last touch becomes now, unless the
    change sets it."""
    implied: dict[str, Any] = {}
    approval = change.approval_status
    approval_changed = approval != stakeholder.approval_status
    if approval_changed and approval == Approval.PENDING and change.approval_requested_at is KEEP:
        implied["approval_requested_at"] = now
    if approval_changed and approval in (Approval.APPROVED, Approval.REJECTED):
        if change.approval_decided_at is KEEP:
            implied["approval_decided_at"] = now
    text = stakeholder.objection if change.objection is KEEP else change.objection
    objection_changed = (
        text != stakeholder.objection or change.objection_weight != stakeholder.objection_weight
    )
    stated = bool(text.strip() or change.objection_weight is not None)
    if objection_changed and stated and not stakeholder.objection_open:
        if change.objection_raised_at is KEEP:
            implied["objection_raised_at"] = now
        if change.objection_resolved_at is KEEP and stakeholder.objection_resolved_at is not None:
            implied["objection_resolved_at"] = None
    resolved_changed = (
        change.objection_resolved_at is not KEEP
        and change.objection_resolved_at != stakeholder.objection_resolved_at
    )
    requested_again = (
        change.approval_requested_at is not KEEP
        and change.approval_requested_at != stakeholder.approval_requested_at
    )
    touched = approval_changed or objection_changed or resolved_changed or requested_again
    if touched and change.last_touch == stakeholder.last_touch:
        implied["last_touch"] = now
    return replace(change, **implied) if implied else change


def _field_write(attribute: str, mapped: AttributeField, change: StakeholderChange) -> FieldValueWrite:
    if attribute == FieldMapping.Attribute.ROLE:
        wanted: Any = None if change.role is None else change.role.pk
    elif attribute == FieldMapping.Attribute.APPROVAL_STATUS:
        wanted = None if change.approval_status == Approval.UNKNOWN else change.approval_status
    else:
        value = getattr(change, CHANGE_FIELDS[attribute])
        return (
            FieldValueWrite.clear(mapped.field_id)
            if value is None or value == ""
            else FieldValueWrite.of(mapped.field_id, value)
        )
    if wanted is None:
        return FieldValueWrite.clear(mapped.field_id)
    enum_id = next((enum_id for enum_id, value in mapped.options.items() if value == wanted), None)
    if enum_id is None:
        label = change.role.label if attribute == FieldMapping.Attribute.ROLE and change.role else wanted
        raise StakeholderWriteError(f"Kommo has no option for “{label}” in this field: map it in the admin.")
    return FieldValueWrite.enums(mapped.field_id, enum_id)


def _changed_attributes(stakeholder: Stakeholder, change: StakeholderChange) -> list[str]:
    changed: list[str] = []
    if (change.role.pk if change.role else None) != stakeholder.role_id:
        changed.append(FieldMapping.Attribute.ROLE)
    if change.approval_status != stakeholder.approval_status:
        changed.append(FieldMapping.Attribute.APPROVAL_STATUS)
    for attribute, name in CHANGE_FIELDS.items():
        value = getattr(change, name)
        if value is not KEEP and value != getattr(stakeholder, name):
            changed.append(attribute)
    return changed


class StakeholderNeedsElement(StakeholderWriteError):
    """The change needs the person's "Stakeholders" element on this deal, and there is none: the message says
    so, and the page offers to create it (``create_element=True``)."""


def _catalog_for_roles(mappings: MappingSet) -> tuple[int, dict[str, AttributeField]] | None:
    """The mapped catalog that holds stakeholders (the one mapping the role), if any."""
    for catalog_id, fields in sorted(mappings.catalog.items()):
        if FieldMapping.Attribute.ROLE in fields:
            return catalog_id, dict(fields)
    return None


# An attribute's name inside a sentence where its label alone does not read as a noun.
_ATTRIBUTE_NOUNS: dict[str, str] = {
    FieldMapping.Attribute.APPROVAL_REQUESTED: "approval's request date",
    FieldMapping.Attribute.APPROVAL_DECIDED: "approval's decision date",
    FieldMapping.Attribute.OBJECTION_RAISED: "objection's date",
    FieldMapping.Attribute.OBJECTION_RESOLVED: "objection's resolution date",
}


def _attribute_name(attribute: str) -> str:
    return _ATTRIBUTE_NOUNS.get(attribute) or FieldMapping.Attribute(attribute).label.lower()


def _in_words(names: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def stakeholder_update_in_kommo(
    *,
    stakeholder: Stakeholder,
    change: StakeholderChange,
    provenance: Provenance,
    client: KommoClient | None = None,
    create_element: bool = False,
) -> bool:
    """Write a person's change of role, approval, last touch or objection weight to Kommo, then refresh the
    mirror from Kommo's answer (which re-derives the stakeholders, the history recording every change,
    the re-read deal's too, as made by ``provenance``: the manager's page gives the signed-in user). Each
    attribute goes where it is read from: the deal's catalog element when there is one and the catalog
    maps it, else the contact's field.

    An attribute only the catalog maps, for a person with no element on this deal, raises
    StakeholderNeedsElement; with ``create_element`` the element is created instead (named after the person,
    carrying every catalog attribute of the change) and linked to the deal. Returns whether anything was
    written; raises StakeholderWriteError with a readable reason."""
    change = change_with_lifecycle(stakeholder, change, timezone.now())
    changed = _changed_attributes(stakeholder, change)
    if not changed and not create_element:
        return False
    account = stakeholder.account
    mappings = field_mappings_for_account(account=account)
    element = stakeholder.catalog_element
    contact = stakeholder.contact
    element_fields = mappings.catalog.get(element.catalog_kommo_id, {}) if element is not None else {}
    catalog = _catalog_for_roles(mappings) if element is None else None
    element_writes: list[FieldValueWrite] = []
    contact_writes: list[FieldValueWrite] = []
    missing_element: list[str] = []
    for attribute in changed:
        if attribute in element_fields:
            element_writes.append(_field_write(attribute, element_fields[attribute], change))
        elif contact is not None and attribute in mappings.contact:
            contact_writes.append(_field_write(attribute, mappings.contact[attribute], change))
        elif catalog is not None and attribute in catalog[1]:
            missing_element.append(attribute)
        elif attribute in OPTIONAL_ATTRIBUTES:
            continue
        else:
            raise StakeholderWriteError(
                f"Kommo has no field for the {_attribute_name(attribute)} of "
                f"{stakeholder.name or 'this stakeholder'}: sales ops can map one in the admin."
            )
    name = stakeholder.name or "This person"
    if missing_element and not create_element:
        what = _in_words([_attribute_name(attribute) for attribute in missing_element])
        raise StakeholderNeedsElement(
            f"{name} has no Stakeholders element on this deal, where Kommo keeps their {what}: create the "
            f"element to save {'it' if len(missing_element) == 1 else 'them'}."
        )
    client = client or KommoClient(account)
    follow = stakeholders_follow(provenance)
    try:
        if element is not None and element_writes:
            updated = client.catalog_elements_update(
                element.catalog_kommo_id,
                [CatalogElementWrite(id=element.kommo_id, custom_fields_values=tuple(element_writes))],
            )
            catalog_elements_upsert_from_kommo(account=account, elements=updated, follow=follow)
        if contact is not None and contact_writes:
            client.contacts_update(
                [ContactWrite(id=contact.kommo_id, custom_fields_values=tuple(contact_writes))]
            )
            fresh = client.contacts_get(contact.kommo_id, with_=("catalog_elements",))
            if fresh is not None:
                contacts_upsert_from_kommo(account=account, contacts=[fresh], follow=follow)
        if create_element:
            if element is not None:
                raise StakeholderWriteError(f"{name} already has a Stakeholders element on this deal.")
            if catalog is None:
                raise StakeholderWriteError(
                    "Kommo has no Stakeholders catalog mapped for this account: sales ops can map one."
                )
            _element_create(
                client=client,
                lead=stakeholder.lead,
                name=stakeholder.name,
                change=change,
                catalog=catalog,
                follow=follow,
            )
    except KommoValidationError as error:
        raise StakeholderWriteError(f"Kommo refused the change: {error}") from error
    except KommoError as error:
        raise StakeholderWriteError(
            f"Kommo could not take the change now: {error}", permanent=error.permanent
        ) from error
    return True


def _catalog_writes(fields: dict[str, AttributeField], change: StakeholderChange) -> list[FieldValueWrite]:
    writes = []
    for attribute, mapped in fields.items():
        if attribute == FieldMapping.Attribute.ROLE and change.role is None:
            continue
        if attribute == FieldMapping.Attribute.APPROVAL_STATUS and change.approval_status == Approval.UNKNOWN:
            continue
        if attribute in CHANGE_FIELDS and getattr(change, CHANGE_FIELDS[attribute]) in (None, "", KEEP):
            continue
        writes.append(_field_write(attribute, mapped, change))
    return writes


def _lead_refresh(*, client: KommoClient, lead: Lead, follow: MirrorFollow) -> None:
    """Re-read the deal with its contacts and elements and mirror it (which re-derives its stakeholders).
    It records no move: a stage the deal reached in Kommo meanwhile is Kommo's to report (its webhook, or
    the events sweep, with the exact time and who moved it), and those paths hand it to the gates."""
    fresh = client.leads_get(lead.kommo_id, with_=("contacts", "catalog_elements"))
    if fresh is not None:
        leads_upsert_from_kommo(
            account=lead.account, leads=[fresh], moves_reported_for={fresh.id}, follow=follow
        )


def stakeholders_follow(provenance: Provenance) -> MirrorFollow:
    """A mirror writer's ``follow`` that derives again, in the write's transaction, the stakeholders of the
    deals whose deal, contacts or catalog elements changed, the history recording ``provenance``. All an
    edit on the portal's pages needs — for the deal's re-read too: its writes record no move (the re-read
    infers none, see :func:`_lead_refresh`), so nothing of the gates' follows; the flows that record moves
    add the gates' part (``apps.flows.sync.mirror_follow_as``)."""

    def follow(account: KommoAccount, result: BatchResult) -> None:
        stakeholders_derive_for_mirror_changes(
            account=account,
            lead_ids=result.lead_ids,
            contact_ids=result.contact_ids,
            catalog_element_ids=result.catalog_element_ids,
            provenance=provenance,
        )

    return follow


def _element_create(
    *,
    client: KommoClient,
    lead: Lead,
    name: str,
    change: StakeholderChange,
    catalog: tuple[int, dict[str, AttributeField]],
    follow: MirrorFollow,
) -> None:
    """One "Stakeholders" element named after the person, with the change's values, linked to the deal."""
    catalog_id, fields = catalog
    elements = client.catalog_elements_create(
        catalog_id,
        [CatalogElementWrite(name=name, custom_fields_values=tuple(_catalog_writes(fields, change)) or None)],
    )
    if not elements:
        raise StakeholderWriteError("Kommo answered no element.")
    catalog_elements_upsert_from_kommo(account=lead.account, elements=elements, follow=follow)
    client.links_create(
        "leads",
        lead.kommo_id,
        [
            LinkWrite(
                to_entity_id=elements[0].id,
                to_entity_type="catalog_elements",
                catalog_id=catalog_id,
                quantity=1,
            )
        ],
    )
    _lead_refresh(client=client, lead=lead, follow=follow)


@dataclass(frozen=True)
class NewStakeholder:
    """A person a manager adds to a deal: one of the deal's contacts, or a new person kept as a Kommo
    contact (``as_contact``) or as a "Stakeholders" element only."""

    change: StakeholderChange
    contact: Contact | None = None
    name: str = ""
    as_contact: bool = False


def stakeholder_add_in_kommo(
    *, lead: Lead, new: NewStakeholder, provenance: Provenance, client: KommoClient | None = None
) -> None:
    """Add a stakeholder to the deal in Kommo, then mirror the deal again (which derives it, the history
    recording the person's arrival as made by ``provenance``: the manager's page gives the signed-in user).

    A contact (one of the deal's, or a new one linked to the deal) gets the attributes the contact field
    mappings hold; whatever only the catalog holds (approval, usually) goes on a "Stakeholders" element
    named after the person, linked to the deal. A person added as an element only gets the element.
    Raises StakeholderWriteError with a readable reason."""
    name = new.contact.name if new.contact is not None else new.name.strip()
    if not name:
        raise StakeholderWriteError("Give the person's name.")
    # Two clicks on Add at the same instant (two requests, maybe two processes) would each find the person
    # missing and add them twice: one add per deal at a time, the second told, and the person looked for
    # again once the add holds the deal (an add that ended meanwhile has derived them).
    with advisory_lock_if_free(advisory_lock_key(f"stakeholder-add:{lead.pk}")) as ours:
        if not ours:
            raise StakeholderWriteError(
                "Another stakeholder is being added to this deal right now.", permanent=False
            )
        if _already_a_stakeholder(lead, new, name):
            raise StakeholderWriteError(
                f"{name} is already a stakeholder of this deal: change their role or approval instead."
            )
        _stakeholder_add(lead=lead, new=new, name=name, provenance=provenance, client=client)


def _already_a_stakeholder(lead: Lead, new: NewStakeholder, name: str) -> bool:
    """The deal's contact is a stakeholder already, or a new person's name is one's (as the add form
    checks them)."""
    people = Stakeholder.objects.filter(lead=lead)
    if new.contact is not None:
        return people.filter(contact=new.contact).exists()
    return name_key(name) in {name_key(other) for other in people.values_list("name", flat=True) if other}


def _stakeholder_add(
    *, lead: Lead, new: NewStakeholder, name: str, provenance: Provenance, client: KommoClient | None
) -> None:
    account = lead.account
    mappings = field_mappings_for_account(account=account)
    catalog = _catalog_for_roles(mappings)
    change = new.change
    wants_contact = new.contact is not None or new.as_contact
    if wants_contact and FieldMapping.Attribute.ROLE not in mappings.contact and catalog is None:
        raise StakeholderWriteError("Kommo has no field for the role: sales ops can map one in the admin.")
    if not wants_contact and catalog is None:
        raise StakeholderWriteError(
            "Kommo has no Stakeholders catalog mapped for this account: add the person as a contact."
        )
    contact_fields = {
        attribute: mapped
        for attribute, mapped in mappings.contact.items()
        if attribute != FieldMapping.Attribute.OBJECTION_WEIGHT or change.objection_weight is not None
    }
    contact_writes = _catalog_writes(dict(contact_fields), change) if wants_contact else []
    # The element is needed when no contact is wanted, or when the catalog holds something the contact
    # fields cannot (the approval, in the default set-up).
    given = {
        FieldMapping.Attribute.ROLE: change.role is not None,
        FieldMapping.Attribute.APPROVAL_STATUS: change.approval_status != Approval.UNKNOWN,
        FieldMapping.Attribute.OBJECTION_WEIGHT: change.objection_weight is not None,
    }
    needs_element = catalog is not None and (
        not wants_contact
        or any(
            wanted and attribute not in mappings.contact and attribute in catalog[1]
            for attribute, wanted in given.items()
        )
    )
    client = client or KommoClient(account)
    follow = stakeholders_follow(provenance)
    try:
        if new.contact is not None:
            if contact_writes:
                client.contacts_update(
                    [ContactWrite(id=new.contact.kommo_id, custom_fields_values=tuple(contact_writes))]
                )
                fresh = client.contacts_get(new.contact.kommo_id, with_=("catalog_elements",))
                if fresh is not None:
                    contacts_upsert_from_kommo(account=account, contacts=[fresh], follow=follow)
        elif new.as_contact:
            created = client.contacts_create(
                [
                    ContactWrite(
                        name=name,
                        responsible_user_id=lead.responsible_user_kommo_id,
                        custom_fields_values=tuple(contact_writes) or None,
                    )
                ]
            )
            if not created:
                raise StakeholderWriteError("Kommo answered no contact.")
            client.links_create(
                "leads", lead.kommo_id, [LinkWrite(to_entity_id=created[0].id, to_entity_type="contacts")]
            )
            fresh = client.contacts_get(created[0].id, with_=("catalog_elements",))
            if fresh is not None:
                contacts_upsert_from_kommo(account=account, contacts=[fresh], follow=follow)
        if needs_element:
            assert catalog is not None
            _element_create(
                client=client, lead=lead, name=name, change=change, catalog=catalog, follow=follow
            )
        else:
            _lead_refresh(client=client, lead=lead, follow=follow)
    except KommoValidationError as error:
        raise StakeholderWriteError(f"Kommo refused the new stakeholder: {error}") from error
    except KommoError as error:
        raise StakeholderWriteError(
            f"Kommo could not take the new stakeholder now: {error}", permanent=error.permanent
        ) from error


def stakeholders_derive_for_account(
    *, account: KommoAccount, provenance: Provenance, batch_size: int = 500
) -> bool:
    """Re-derive every deal of the account (after its field mappings changed), in batches, the history
    recording the changes as made by ``provenance``."""
    lead_ids = list(Lead.objects.filter(account=account).order_by("pk").values_list("pk", flat=True))
    changed = False
    for start in range(0, len(lead_ids), batch_size):
        changed |= stakeholders_derive_for_leads(
            account=account, lead_ids=lead_ids[start : start + batch_size], provenance=provenance
        )
    return changed


# -- the past, read back from Kommo's events --------------------------------------------------------------

# A mapped attribute → the history's field for it.
ATTRIBUTE_HISTORY: dict[str, str] = {
    FieldMapping.Attribute.ROLE: StakeholderEvent.Field.ROLE,
    FieldMapping.Attribute.APPROVAL_STATUS: StakeholderEvent.Field.APPROVAL_STATUS,
    FieldMapping.Attribute.LAST_TOUCH: StakeholderEvent.Field.LAST_TOUCH,
    FieldMapping.Attribute.OBJECTION_WEIGHT: StakeholderEvent.Field.OBJECTION_WEIGHT,
    FieldMapping.Attribute.APPROVAL_REQUESTED: StakeholderEvent.Field.APPROVAL_REQUESTED_AT,
    FieldMapping.Attribute.APPROVAL_DECIDED: StakeholderEvent.Field.APPROVAL_DECIDED_AT,
    FieldMapping.Attribute.OBJECTION: StakeholderEvent.Field.OBJECTION,
    FieldMapping.Attribute.OBJECTION_RAISED: StakeholderEvent.Field.OBJECTION_RAISED_AT,
    FieldMapping.Attribute.OBJECTION_RESOLVED: StakeholderEvent.Field.OBJECTION_RESOLVED_AT,
}
_SELECTS = (FieldMapping.Attribute.ROLE, FieldMapping.Attribute.APPROVAL_STATUS)
_TEXTS = (FieldMapping.Attribute.OBJECTION,)
_NUMBERS = (FieldMapping.Attribute.OBJECTION_WEIGHT,)


def _seen_value(attribute: str, mapped: AttributeField, values: Sequence[FieldValueSeen]) -> object:
    """What an event's values of a mapped field say, in the history's terms (None: nothing)."""
    if not values:
        return None
    value = values[0]
    if attribute in _SELECTS:
        return mapped.options.get(value.enum_id) if value.enum_id is not None else None
    if attribute in _TEXTS:
        return value.text.strip() or None
    if attribute in _NUMBERS:
        try:
            return Decimal(value.text)
        except (InvalidOperation, ValueError):
            return None
    try:  # a date: unix seconds
        return dt.datetime.fromtimestamp(int(value.text), tz=dt.UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _field_attribute(
    change: FieldChange, mappings: MappingSet
) -> tuple[str, AttributeField, int | None] | None:
    """(attribute, mapped field, catalog id or None for a contact field) of the field a change names."""
    if change.entity_type == "contact":
        fields = mappings.contact
    else:
        fields = mappings.catalog.get(change.catalog_id or 0, {})
    for attribute, mapped in fields.items():
        if mapped.field_id == change.field_id:
            return attribute, mapped, change.catalog_id
    return None


@transaction.atomic
def stakeholders_history_from_field_changes(
    *, account: KommoAccount, changes: Iterable[FieldChange], provenance: Provenance
) -> int:
    """Past changes of the mapped fields of contacts and catalog elements, read back from Kommo's events
    (the history backfill), as history rows dated when they happened: a role given late, an approval
    requested then given, an objection raised then withdrawn. Each becomes a row for every stakeholder
    the contact or element stands for (a contact's change not where the person's catalog element maps the
    same attribute: the element wins, as in derivation); a change to pending or to a decision also dates the
    request or the decision, as derivation does when Kommo's date field says nothing. The rows carry the
    event's id, so reading the same events again adds nothing. Returns the rows offered (a row already
    there is skipped). The rows are recorded as made by ``provenance`` (the backfill's: a sync)."""
    mappings = field_mappings_for_account(account=account)
    seen: list[tuple[FieldChange, str, AttributeField, int | None]] = []
    for change in changes:
        found = _field_attribute(change, mappings)
        if found is not None:
            seen.append((change, *found))
    if not seen:
        return 0
    contact_ids = {change.entity_id for change, _, _, catalog in seen if catalog is None}
    element_ids = {change.entity_id for change, _, _, catalog in seen if catalog is not None}
    # The mirror's keys first, then the stakeholders by their foreign keys: one join with an OR across two
    # Kommo-id lists was planned as nested loops over whole index scans whenever the tables' statistics
    # were stale (right after a backfill wrote them), 100-180 s a call.
    contact_pks = list(
        Contact.objects.filter(account=account, kommo_id__in=contact_ids).values_list("pk", flat=True)
    )
    element_pks = list(
        CatalogElement.objects.filter(account=account, kommo_id__in=element_ids).values_list("pk", flat=True)
    )
    rows = Stakeholder.objects.filter(account=account).filter(
        Q(contact_id__in=contact_pks) | Q(catalog_element_id__in=element_pks)
    )
    by_contact: dict[int, list[tuple[Stakeholder, int | None]]] = {}
    by_element: dict[int, list[Stakeholder]] = {}
    people = list(
        rows.select_related("contact", "catalog_element").only(
            "pk",
            "lead_id",
            "name",
            "contact__kommo_id",
            "catalog_element__kommo_id",
            "catalog_element__catalog_kommo_id",
        )
    )
    for person in people:
        if person.contact is not None:
            element_catalog = person.catalog_element.catalog_kommo_id if person.catalog_element else None
            by_contact.setdefault(person.contact.kommo_id, []).append((person, element_catalog))
        if person.catalog_element is not None:
            by_element.setdefault(person.catalog_element.kommo_id, []).append(person)
    # Date fields changed by the events themselves: derivation's own dating is not added for them.
    dated = {
        (change.entity_type, change.entity_id, change.at, attribute)
        for change, attribute, _, _ in seen
        if attribute not in (*_SELECTS, *_TEXTS, *_NUMBERS)
    }
    now = timezone.now()
    events: list[StakeholderEvent] = []

    def add(person: Stakeholder, change: FieldChange, field: str, old: object, new: object) -> None:
        events.append(
            StakeholderEvent(
                account=account,
                lead_id=person.lead_id,
                stakeholder_id=person.pk,
                name=person.name,
                field=field,
                old=_history_value(old),
                new=_history_value(new),
                at=min(change.at, now),
                source=provenance.source.value,
                user_id=provenance.user_id,
                kommo_event_id=change.event_id,
            )
        )

    for change, attribute, mapped, catalog in seen:
        if catalog is None:
            targets = [
                person
                for person, element_catalog in by_contact.get(change.entity_id, [])
                if attribute not in mappings.catalog.get(element_catalog or 0, {})
            ]
        else:
            targets = by_element.get(change.entity_id, [])
        old = _seen_value(attribute, mapped, change.before)
        new = _seen_value(attribute, mapped, change.after)
        if old == new:
            continue
        implied: list[tuple[str, str]] = []
        if attribute == FieldMapping.Attribute.APPROVAL_STATUS and new is not None:
            implied.append(
                (FieldMapping.Attribute.APPROVAL_REQUESTED, StakeholderEvent.Field.APPROVAL_REQUESTED_AT)
                if new == Approval.PENDING
                else (FieldMapping.Attribute.APPROVAL_DECIDED, StakeholderEvent.Field.APPROVAL_DECIDED_AT)
            )
        if attribute in (FieldMapping.Attribute.OBJECTION, FieldMapping.Attribute.OBJECTION_WEIGHT):
            if old is None and new is not None:
                implied.append(
                    (FieldMapping.Attribute.OBJECTION_RAISED, StakeholderEvent.Field.OBJECTION_RAISED_AT)
                )
        for person in targets:
            add(person, change, ATTRIBUTE_HISTORY[attribute], old, new)
            for date_attribute, field in implied:
                if (change.entity_type, change.entity_id, change.at, date_attribute) not in dated:
                    add(person, change, field, None, change.at)
    StakeholderEvent.objects.bulk_create(events, ignore_conflicts=True)
    return len(events)
