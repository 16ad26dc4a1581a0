"""Writes of the stakeholders app: deriving the stakeholder table from the mirror, and changing a
stakeholder's role, approval or last touch in Kommo."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Prefetch
from django.utils import timezone

from apps.kommo.client import KommoClient
from apps.kommo.exceptions import KommoError, KommoValidationError
from apps.kommo.models import KommoAccount
from apps.kommo.models.mirror import CatalogElement, Contact, Lead, LeadCatalogElement, LeadContact
from apps.kommo.services.mirror import (
    catalog_elements_upsert_from_kommo,
    contacts_upsert_from_kommo,
    leads_upsert_from_kommo,
)
from apps.kommo.types import CatalogElementWrite, ContactWrite, FieldValueWrite, LinkWrite
from apps.stakeholders.derivation import (
    AttributeField,
    MappingSet,
    PartyInput,
    StakeholderFacts,
    merge_stakeholders,
)
from apps.stakeholders.models import Approval, FieldMapping, Role, Stakeholder

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
)


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


def _row_values(facts: StakeholderFacts) -> dict[str, object]:
    return {
        "contact_id": facts.contact_pk,
        "catalog_element_id": facts.element_pk,
        "name": facts.name[:255],
        "role_id": facts.role_id,
        "approval_status": facts.approval_status,
        "last_touch": facts.last_touch,
        "objection_weight": facts.objection_weight,
        "source": facts.source,
    }


def _sync_lead_rows(
    *, account: KommoAccount, lead: Lead, wanted: list[StakeholderFacts], existing: list[Stakeholder]
) -> tuple[list[Stakeholder], list[Stakeholder], list[int]]:
    """(rows to create, rows to update, pks to delete) that make ``existing`` say ``wanted``. A row is
    kept (with its notes) when it names the same contact, or else the same catalog element."""
    by_contact = {row.contact_id: row for row in existing if row.contact_id is not None}
    by_element = {row.catalog_element_id: row for row in existing if row.catalog_element_id is not None}
    used: set[int] = set()
    create: list[Stakeholder] = []
    update: list[Stakeholder] = []
    for facts in wanted:
        values = _row_values(facts)
        row = by_contact.get(facts.contact_pk) if facts.contact_pk is not None else None
        if row is None or row.pk in used:
            candidate = by_element.get(facts.element_pk) if facts.element_pk is not None else None
            row = candidate if candidate is not None and candidate.pk not in used else None
        if row is None:
            create.append(Stakeholder(account=account, lead=lead, **values))
            continue
        used.add(row.pk)
        if any(getattr(row, column) != value for column, value in values.items()):
            for column, value in values.items():
                setattr(row, column, value)
            row.updated = timezone.now()
            update.append(row)
    delete = [row.pk for row in existing if row.pk not in used]
    return create, update, delete


@transaction.atomic
def stakeholders_derive_for_leads(*, account: KommoAccount, lead_ids: Collection[int]) -> bool:
    """Recompute the stakeholders of these deals (local Lead pks) from the mirror and the account's field
    mappings. Returns whether any row was created, changed or removed."""
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
    for lead in leads:
        rows = _sync_lead_rows(
            account=account,
            lead=lead,
            wanted=_facts_for_lead(lead, mappings),
            existing=existing.get(lead.pk, []),
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
    return bool(create or update or delete)


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


@dataclass(frozen=True)
class StakeholderChange:
    """The attributes a person set; only those that differ from the stakeholder's are written."""

    role: Role | None
    approval_status: str
    last_touch: dt.datetime | None
    objection_weight: Decimal | None = None


def _field_write(attribute: str, mapped: AttributeField, change: StakeholderChange) -> FieldValueWrite:
    if attribute == FieldMapping.Attribute.ROLE:
        wanted: Any = None if change.role is None else change.role.pk
    elif attribute == FieldMapping.Attribute.APPROVAL_STATUS:
        wanted = None if change.approval_status == Approval.UNKNOWN else change.approval_status
    else:
        value = (
            change.last_touch if attribute == FieldMapping.Attribute.LAST_TOUCH else change.objection_weight
        )
        return (
            FieldValueWrite.clear(mapped.field_id)
            if value is None
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
    if change.last_touch != stakeholder.last_touch:
        changed.append(FieldMapping.Attribute.LAST_TOUCH)
    if change.objection_weight != stakeholder.objection_weight:
        changed.append(FieldMapping.Attribute.OBJECTION_WEIGHT)
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


def _attribute_name(attribute: str) -> str:
    return FieldMapping.Attribute(attribute).label.lower()


def stakeholder_update_in_kommo(
    *,
    stakeholder: Stakeholder,
    change: StakeholderChange,
    client: KommoClient | None = None,
    create_element: bool = False,
) -> bool:
    """Write a person's change of role, approval, last touch or objection weight to Kommo, then refresh the
    mirror from Kommo's answer (which re-derives the stakeholders). Each attribute goes where it is read
    from: the deal's catalog element when there is one and the catalog maps it, else the contact's field.

    An attribute only the catalog maps, for a person with no element on this deal, raises
    StakeholderNeedsElement; with ``create_element`` the element is created instead (named after the person,
    carrying every catalog attribute of the change) and linked to the deal. Returns whether anything was
    written; raises StakeholderWriteError with a readable reason."""
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
        else:
            raise StakeholderWriteError(
                f"Kommo has no field for the {_attribute_name(attribute)} of "
                f"{stakeholder.name or 'this stakeholder'}: sales ops can map one in the admin."
            )
    name = stakeholder.name or "This person"
    if missing_element and not create_element:
        what = " and ".join(_attribute_name(attribute) for attribute in missing_element)
        raise StakeholderNeedsElement(
            f"{name} has no Stakeholders element on this deal, and the {what} is kept there in Kommo: "
            "create the element to save it."
        )
    client = client or KommoClient(account)
    try:
        if element is not None and element_writes:
            updated = client.catalog_elements_update(
                element.catalog_kommo_id,
                [CatalogElementWrite(id=element.kommo_id, custom_fields_values=tuple(element_writes))],
            )
            catalog_elements_upsert_from_kommo(account=account, elements=updated)
        if contact is not None and contact_writes:
            client.contacts_update(
                [ContactWrite(id=contact.kommo_id, custom_fields_values=tuple(contact_writes))]
            )
            fresh = client.contacts_get(contact.kommo_id, with_=("catalog_elements",))
            if fresh is not None:
                contacts_upsert_from_kommo(account=account, contacts=[fresh])
        if create_element:
            if element is not None:
                raise StakeholderWriteError(f"{name} already has a Stakeholders element on this deal.")
            if catalog is None:
                raise StakeholderWriteError(
                    "Kommo has no Stakeholders catalog mapped for this account: sales ops can map one."
                )
            _element_create(
                client=client, lead=stakeholder.lead, name=stakeholder.name, change=change, catalog=catalog
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
        if attribute == FieldMapping.Attribute.LAST_TOUCH and change.last_touch is None:
            continue
        if attribute == FieldMapping.Attribute.OBJECTION_WEIGHT and change.objection_weight is None:
            continue
        writes.append(_field_write(attribute, mapped, change))
    return writes


def _lead_refresh(*, client: KommoClient, lead: Lead) -> None:
    """Re-read the deal with its contacts and elements and mirror it (which re-derives its stakeholders)."""
    fresh = client.leads_get(lead.kommo_id, with_=("contacts", "catalog_elements"))
    if fresh is not None:
        leads_upsert_from_kommo(account=lead.account, leads=[fresh])


def _element_create(
    *,
    client: KommoClient,
    lead: Lead,
    name: str,
    change: StakeholderChange,
    catalog: tuple[int, dict[str, AttributeField]],
) -> None:
    """One "Stakeholders" element named after the person, with the change's values, linked to the deal."""
    catalog_id, fields = catalog
    elements = client.catalog_elements_create(
        catalog_id,
        [CatalogElementWrite(name=name, custom_fields_values=tuple(_catalog_writes(fields, change)) or None)],
    )
    if not elements:
        raise StakeholderWriteError("Kommo answered no element.")
    catalog_elements_upsert_from_kommo(account=lead.account, elements=elements)
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
    _lead_refresh(client=client, lead=lead)


@dataclass(frozen=True)
class NewStakeholder:
    """A person a manager adds to a deal: one of the deal's contacts, or a new person kept as a Kommo
    contact (``as_contact``) or as a "Stakeholders" element only."""

    change: StakeholderChange
    contact: Contact | None = None
    name: str = ""
    as_contact: bool = False


def stakeholder_add_in_kommo(*, lead: Lead, new: NewStakeholder, client: KommoClient | None = None) -> None:
    """Add a stakeholder to the deal in Kommo, then mirror the deal again (which derives it).

    A contact (one of the deal's, or a new one linked to the deal) gets the attributes the contact field
    mappings hold; whatever only the catalog holds (approval, usually) goes on a "Stakeholders" element
    named after the person, linked to the deal. A person added as an element only gets the element.
    Raises StakeholderWriteError with a readable reason."""
    account = lead.account
    mappings = field_mappings_for_account(account=account)
    catalog = _catalog_for_roles(mappings)
    change = new.change
    name = new.contact.name if new.contact is not None else new.name.strip()
    if not name:
        raise StakeholderWriteError("Give the person's name.")
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
    try:
        if new.contact is not None:
            if contact_writes:
                client.contacts_update(
                    [ContactWrite(id=new.contact.kommo_id, custom_fields_values=tuple(contact_writes))]
                )
                fresh = client.contacts_get(new.contact.kommo_id, with_=("catalog_elements",))
                if fresh is not None:
                    contacts_upsert_from_kommo(account=account, contacts=[fresh])
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
                contacts_upsert_from_kommo(account=account, contacts=[fresh])
        if needs_element:
            assert catalog is not None
            _element_create(client=client, lead=lead, name=name, change=change, catalog=catalog)
        else:
            _lead_refresh(client=client, lead=lead)
    except KommoValidationError as error:
        raise StakeholderWriteError(f"Kommo refused the new stakeholder: {error}") from error
    except KommoError as error:
        raise StakeholderWriteError(
            f"Kommo could not take the new stakeholder now: {error}", permanent=error.permanent
        ) from error


def stakeholders_derive_for_account(*, account: KommoAccount, batch_size: int = 500) -> bool:
    """Re-derive every deal of the account (after its field mappings changed), in batches."""
    lead_ids = list(Lead.objects.filter(account=account).order_by("pk").values_list("pk", flat=True))
    changed = False
    for start in range(0, len(lead_ids), batch_size):
        changed |= stakeholders_derive_for_leads(
            account=account, lead_ids=lead_ids[start : start + batch_size]
        )
    return changed
