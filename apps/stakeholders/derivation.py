"""From Kommo field values to stakeholder facts, without touching the database.

A deal's stakeholders come from two places at once: contacts linked to the deal (their "Role in the
purchase" field and any other mapped contact field) and elements of the "Stakeholders" catalog linked to
the deal (their Role, Approval status, Last touch fields). An element that is linked to one of the deal's
contacts, or failing that is named after one ("Ann Lee" or "Ann Lee — Northwind"), is the same person:
one stakeholder. Where both say something, the catalog element wins — it belongs to this deal, while a
contact field is shared by every deal of that contact. Last touch is the later of the two.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from apps.kommo.types import CustomFieldValue
from apps.stakeholders.models import Approval, FieldMapping


@dataclass(frozen=True)
class AttributeField:
    """One mapped Kommo field: its id and, for selects, Kommo enum id → local value (a Role pk or an
    approval state)."""

    field_id: int
    options: Mapping[int, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MappingSet:
    """An account's field mappings, split by where the attribute lives."""

    contact: Mapping[str, AttributeField]
    catalog: Mapping[int, Mapping[str, AttributeField]]  # catalog id → attribute → field

    @classmethod
    def from_mappings(cls, mappings: Iterable[FieldMapping]) -> MappingSet:
        contact: dict[str, AttributeField] = {}
        catalog: dict[int, dict[str, AttributeField]] = {}
        for mapping in mappings:
            if mapping.source == FieldMapping.Source.LEAD_FIELD:
                continue  # the deal's own attribute (the forecast's close date): not a stakeholder's
            options: dict[int, Any] = {}
            for value in mapping.values.all():
                options[value.enum_id] = value.role_id if mapping.attribute == "role" else value.approval
            entry = AttributeField(field_id=mapping.field_id, options=options)
            if mapping.source == FieldMapping.Source.CONTACT_FIELD:
                contact[mapping.attribute] = entry
            elif mapping.catalog_id is not None:
                catalog.setdefault(mapping.catalog_id, {})[mapping.attribute] = entry
        return cls(contact=contact, catalog=catalog)

    @property
    def uses_contacts(self) -> bool:
        return bool(self.contact)

    @property
    def catalog_ids(self) -> frozenset[int]:
        return frozenset(self.catalog)


@dataclass(frozen=True)
class Attributes:
    """What one source says about a stakeholder; None means "says nothing"."""

    role_id: int | None = None
    approval: str | None = None
    last_touch: dt.datetime | None = None
    objection_weight: Decimal | None = None
    approval_requested_at: dt.datetime | None = None
    approval_decided_at: dt.datetime | None = None
    objection: str | None = None
    objection_raised_at: dt.datetime | None = None
    objection_resolved_at: dt.datetime | None = None


@dataclass(frozen=True)
class PartyInput:
    """A contact or a catalog element linked to the deal, as the mirror holds it."""

    pk: int
    kommo_id: int
    name: str
    field_values: Mapping[int, CustomFieldValue]  # the mirrored row's, by field id
    linked_element_ids: frozenset[int] = frozenset()  # a contact's linked catalog elements (Kommo ids)


@dataclass(frozen=True)
class StakeholderFacts:
    """One derived stakeholder of a deal (the columns of a ``Stakeholder`` row that Kommo decides)."""

    contact_pk: int | None
    element_pk: int | None
    name: str
    role_id: int | None
    approval_status: str
    last_touch: dt.datetime | None
    objection_weight: Decimal | None
    source: str
    approval_requested_at: dt.datetime | None = None
    approval_decided_at: dt.datetime | None = None
    objection: str = ""
    objection_raised_at: dt.datetime | None = None
    objection_resolved_at: dt.datetime | None = None


def _option(value: CustomFieldValue | None, attribute: AttributeField) -> Any:
    if value is None:
        return None
    return next((attribute.options[e] for e in value.enum_ids if e in attribute.options), None)


def read_attributes(
    values: Mapping[int, CustomFieldValue], fields: Mapping[str, AttributeField]
) -> Attributes:
    """Read every mapped attribute from one party's custom field values (by field id)."""

    def value_of(attribute: str) -> CustomFieldValue | None:
        mapped = fields.get(attribute)
        return None if mapped is None else values.get(mapped.field_id)

    role = fields.get(FieldMapping.Attribute.ROLE)
    approval = fields.get(FieldMapping.Attribute.APPROVAL_STATUS)

    def moment(attribute: str) -> dt.datetime | None:
        value = value_of(attribute)
        return value.value if value is not None and isinstance(value.value, dt.datetime) else None

    weight = value_of(FieldMapping.Attribute.OBJECTION_WEIGHT)
    text = value_of(FieldMapping.Attribute.OBJECTION)
    return Attributes(
        role_id=None if role is None else _option(values.get(role.field_id), role),
        approval=None if approval is None else _option(values.get(approval.field_id), approval),
        last_touch=moment(FieldMapping.Attribute.LAST_TOUCH),
        objection_weight=weight.value if weight is not None and isinstance(weight.value, Decimal) else None,
        approval_requested_at=moment(FieldMapping.Attribute.APPROVAL_REQUESTED),
        approval_decided_at=moment(FieldMapping.Attribute.APPROVAL_DECIDED),
        objection=str(text.value).strip() if text is not None and text.value not in (None, "") else None,
        objection_raised_at=moment(FieldMapping.Attribute.OBJECTION_RAISED),
        objection_resolved_at=moment(FieldMapping.Attribute.OBJECTION_RESOLVED),
    )


def person_key(name: str) -> str:
    """A name compared ignoring case and spacing."""
    return " ".join(name.split()).casefold()


NAME_SEPARATORS = (" \u2014 ", " \u2013 ", " - ", ", ", " (")  # em dash, en dash, hyphen, comma, bracket


def names_same_person(contact_name: str, element_name: str) -> bool:
    """Whether an element's name is the contact's name, alone or followed by a qualifier."""
    contact, element = person_key(contact_name), person_key(element_name)
    if not contact:
        return False
    return element == contact or any(element.startswith(contact + sep.casefold()) for sep in NAME_SEPARATORS)


def _contact_for_element(element: PartyInput, contacts: Sequence[PartyInput], taken: set[int]) -> int | None:
    """The index of the deal's contact this element describes, if any (each contact at most once)."""
    free = [index for index in range(len(contacts)) if index not in taken]
    linked = next((i for i in free if element.kommo_id in contacts[i].linked_element_ids), None)
    if linked is not None:
        return linked
    return next((i for i in free if names_same_person(contacts[i].name, element.name)), None)


def _latest(*moments: dt.datetime | None) -> dt.datetime | None:
    present = [moment for moment in moments if moment is not None]
    return max(present) if present else None


def _first(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


def merge_stakeholders(
    *,
    contacts: Sequence[PartyInput],
    elements: Sequence[tuple[PartyInput, int]],
    mappings: MappingSet,
) -> list[StakeholderFacts]:
    """One deal's stakeholders from its contacts and its (element, catalog id) pairs.

    Every contact of the deal is a stakeholder when the account maps contact fields; every element of a
    mapped catalog is one, merged with the contact it describes. Without contact mappings, a contact only
    lends its name and identity to the element that describes it."""
    from_contacts = (
        [read_attributes(c.field_values, mappings.contact) for c in contacts]
        if mappings.uses_contacts
        else []
    )
    merged: dict[int, tuple[PartyInput, Attributes]] = {}
    alone: list[StakeholderFacts] = []
    for element, catalog_id in elements:
        fields = mappings.catalog.get(catalog_id)
        if fields is None:
            continue
        attributes = read_attributes(element.field_values, fields)
        index = _contact_for_element(element, contacts, set(merged))
        if index is not None:
            merged[index] = (element, attributes)
            continue
        alone.append(
            StakeholderFacts(
                contact_pk=None,
                element_pk=element.pk,
                name=element.name,
                role_id=attributes.role_id,
                approval_status=attributes.approval or Approval.UNKNOWN,
                last_touch=attributes.last_touch,
                objection_weight=attributes.objection_weight,
                source="catalog",
                approval_requested_at=attributes.approval_requested_at,
                approval_decided_at=attributes.approval_decided_at,
                objection=attributes.objection or "",
                objection_raised_at=attributes.objection_raised_at,
                objection_resolved_at=attributes.objection_resolved_at,
            )
        )
    facts: list[StakeholderFacts] = []
    for index, contact in enumerate(contacts):
        own = from_contacts[index] if from_contacts else None
        pair = merged.get(index)
        if pair is None and own is None:
            continue
        element_pk, catalog = (pair[0].pk, pair[1]) if pair is not None else (None, Attributes())
        own = own or Attributes()
        facts.append(
            StakeholderFacts(
                contact_pk=contact.pk,
                element_pk=element_pk,
                name=contact.name,
                role_id=_first(catalog.role_id, own.role_id),
                approval_status=_first(catalog.approval, own.approval) or Approval.UNKNOWN,
                last_touch=_latest(catalog.last_touch, own.last_touch),
                objection_weight=_first(catalog.objection_weight, own.objection_weight),
                source=("both" if from_contacts else "catalog")
                if element_pk is not None
                else "contact_field",
                approval_requested_at=_first(catalog.approval_requested_at, own.approval_requested_at),
                approval_decided_at=_first(catalog.approval_decided_at, own.approval_decided_at),
                objection=_first(catalog.objection, own.objection) or "",
                objection_raised_at=_first(catalog.objection_raised_at, own.objection_raised_at),
                objection_resolved_at=_first(catalog.objection_resolved_at, own.objection_resolved_at),
            )
        )
    return facts + alone
