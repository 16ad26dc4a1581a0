"""Buying roles, where stakeholder attributes live in Kommo, and the per-deal stakeholder table.

Stakeholders are derived from the Kommo mirror (contacts with the "Role in the purchase" field, and
elements of the "Stakeholders" catalog linked to a deal) through the account's field mappings; only
``notes`` is the portal's own.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from apps.core.models import TimeStampedModel


class Role(TimeStampedModel):
    """A role in the purchase. Its Kommo enum id, per account, is a ``FieldMappingValue``."""

    code = models.SlugField(max_length=40, unique=True)
    label = models.CharField(max_length=120)
    is_decision_maker = models.BooleanField(
        default=False, help_text="Signs off the purchase; deals without one are flagged."
    )
    weight = models.PositiveSmallIntegerField(default=1, help_text="How much this role counts in reports.")
    sort = models.PositiveSmallIntegerField(default=0, help_text="Order in lists and in Kommo's options.")
    active = models.BooleanField(default=True)
    approval_valid_days = models.PositiveSmallIntegerField(
        "approval lasts (days)",
        null=True,
        blank=True,
        help_text="An approval by this role expires this many days after it was given (e.g. a lawyer's "
        "after 30, when the contract may have changed). Empty: it never expires.",
    )

    class Meta:
        ordering = ("sort", "id")

    def __str__(self) -> str:
        return self.label


class Approval(models.TextChoices):
    """A stakeholder's approval of the purchase."""

    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    UNKNOWN = "unknown", "Unknown"


# The approval states Kommo can hold; "unknown" is what the portal says when Kommo holds nothing.
KOMMO_APPROVALS = (Approval.PENDING, Approval.APPROVED, Approval.REJECTED)


class FieldMapping(TimeStampedModel):
    """Where one attribute lives in one Kommo account: a stakeholder's in a contact custom field, or a field
    of the catalog whose elements are linked to deals (both may exist for the same attribute); a deal's own
    (the expected close date the forecast reads) in a deal custom field."""

    class Attribute(models.TextChoices):
        ROLE = "role", "Role"
        APPROVAL_STATUS = "approval_status", "Approval status"
        LAST_TOUCH = "last_touch", "Last touch"
        OBJECTION_WEIGHT = "objection_weight", "Objection weight"
        APPROVAL_REQUESTED = "approval_requested", "Approval requested"
        APPROVAL_DECIDED = "approval_decided", "Approval decided"
        OBJECTION = "objection", "Objection"
        OBJECTION_RAISED = "objection_raised", "Objection raised"
        OBJECTION_RESOLVED = "objection_resolved", "Objection resolved"
        EXPECTED_CLOSE = "expected_close", "Expected close date (deal)"

    class Source(models.TextChoices):
        CONTACT_FIELD = "contact_field", "Contact field"
        CATALOG_FIELD = "catalog_field", "Catalog field"
        LEAD_FIELD = "lead_field", "Deal field"

    # The attributes of the deal itself, mapped to a deal field (and only those are).
    DEAL_ATTRIBUTES = (Attribute.EXPECTED_CLOSE,)

    account = models.ForeignKey(
        "kommo.KommoAccount", on_delete=models.CASCADE, related_name="stakeholder_field_mappings"
    )
    attribute = models.CharField(max_length=20, choices=Attribute.choices)
    source = models.CharField(max_length=20, choices=Source.choices)
    field_id = models.PositiveBigIntegerField(help_text="The Kommo custom field id.")
    # Not stored: the field's name in the mirror, when whoever read the row looked it up (the admin does).
    kommo_field_name: str | None = None
    catalog_id = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="The Kommo catalog id (catalog fields only)."
    )

    class Meta:
        ordering = ("account", "attribute", "source")
        constraints = [
            models.UniqueConstraint(
                fields=("account", "attribute", "source"), name="stakeholders_mapping_one_per_source"
            ),
            models.CheckConstraint(
                condition=(Q(source="catalog_field", catalog_id__isnull=False))
                | (Q(source__in=("contact_field", "lead_field"), catalog_id__isnull=True)),
                name="stakeholders_mapping_catalog_id_iff_catalog",
            ),
            models.CheckConstraint(
                condition=Q(attribute="expected_close", source="lead_field")
                | (~Q(attribute="expected_close") & ~Q(source="lead_field")),
                name="stakeholders_mapping_deal_field_iff_deal_attribute",
            ),
        ]

    def __str__(self) -> str:
        # The Kommo field by its name when the admin read it from the mirror (``kommo_field_name``, set by
        # ``FieldMappingAdmin.get_object`` for the page's title), else by its id.
        field = f"“{self.kommo_field_name}”" if self.kommo_field_name else str(self.field_id)
        return f"{self.get_attribute_display()} ← {self.get_source_display()} {field}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.source == self.Source.CATALOG_FIELD and self.catalog_id is None:
            errors["catalog_id"] = "A catalog field needs the id of its catalog."
        if self.source == self.Source.CONTACT_FIELD and self.catalog_id is not None:
            errors["catalog_id"] = "A contact field belongs to no catalog; leave this empty."
        if self.source == self.Source.LEAD_FIELD and self.catalog_id is not None:
            errors["catalog_id"] = "A deal field belongs to no catalog; leave this empty."
        deal_attribute = self.attribute in self.DEAL_ATTRIBUTES
        if self.attribute and self.source and deal_attribute != (self.source == self.Source.LEAD_FIELD):
            errors["source"] = (
                "The expected close date is a deal field."
                if deal_attribute
                else "A deal field holds only the expected close date; stakeholders' attributes live on "
                "contacts or catalog elements."
            )
        if self.account_id is not None and self.attribute and self.source:
            clash = FieldMapping.objects.filter(
                account_id=self.account_id, attribute=self.attribute, source=self.source
            ).exclude(pk=self.pk)
            if clash.exists():
                errors["attribute"] = "This account already maps this attribute from this source."
        if errors:
            raise ValidationError(errors)


class FieldMappingValue(models.Model):
    """One option of a mapped select field: Kommo's enum id ↔ a Role (role) or an approval state."""

    mapping = models.ForeignKey(FieldMapping, on_delete=models.CASCADE, related_name="values")
    enum_id = models.PositiveBigIntegerField(help_text="The Kommo enum (option) id.")
    role = models.ForeignKey(Role, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    approval = models.CharField(
        max_length=10, blank=True, choices=[(value, value.label) for value in KOMMO_APPROVALS]
    )

    class Meta:
        ordering = ("mapping", "enum_id")
        constraints = [
            models.UniqueConstraint(fields=("mapping", "enum_id"), name="stakeholders_value_enum_once"),
            models.UniqueConstraint(
                fields=("mapping", "role"),
                condition=Q(role__isnull=False),
                name="stakeholders_value_role_once",
            ),
            models.UniqueConstraint(
                fields=("mapping", "approval"),
                condition=~Q(approval=""),
                name="stakeholders_value_approval_once",
            ),
            models.CheckConstraint(
                condition=(Q(role__isnull=False) & Q(approval="")) | (Q(role__isnull=True) & ~Q(approval="")),
                name="stakeholders_value_role_xor_approval",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.enum_id} → {self.role or self.get_approval_display()}"

    def clean(self) -> None:
        mapping = self.mapping if self.mapping_id is not None else None
        if mapping is None:
            return
        if mapping.attribute == FieldMapping.Attribute.ROLE:
            if self.role_id is None or self.approval:
                raise ValidationError({"role": "A role field's option maps to a role (and no approval)."})
        elif mapping.attribute == FieldMapping.Attribute.APPROVAL_STATUS:
            if not self.approval or self.role_id is not None:
                raise ValidationError(
                    {"approval": "An approval field's option maps to an approval (and no role)."}
                )
        else:
            raise ValidationError(
                f"{mapping.get_attribute_display()} is not a select: it has no options to map."
            )


class Stakeholder(models.Model):
    """One person taking part in one deal's purchase, derived from the mirror (see services)."""

    class Source(models.TextChoices):
        CONTACT_FIELD = "contact_field", "Contact field"
        CATALOG = "catalog", "Catalog"
        BOTH = "both", "Contact field and catalog"

    Approval = Approval

    account = models.ForeignKey("kommo.KommoAccount", on_delete=models.CASCADE, related_name="stakeholders")
    lead = models.ForeignKey("kommo.Lead", on_delete=models.CASCADE, related_name="stakeholders")
    contact = models.ForeignKey(
        "kommo.Contact", null=True, blank=True, on_delete=models.CASCADE, related_name="stakeholder_rows"
    )
    catalog_element = models.ForeignKey(
        "kommo.CatalogElement",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="stakeholder_rows",
    )
    role = models.ForeignKey(
        Role, null=True, blank=True, on_delete=models.PROTECT, related_name="stakeholders"
    )
    approval_status = models.CharField(max_length=10, choices=Approval.choices, default=Approval.UNKNOWN)
    last_touch = models.DateTimeField(null=True, blank=True)
    objection_weight = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    approval_requested_at = models.DateTimeField(null=True, blank=True)
    approval_decided_at = models.DateTimeField(null=True, blank=True)
    objection = models.TextField(blank=True)
    objection_raised_at = models.DateTimeField(null=True, blank=True)
    objection_resolved_at = models.DateTimeField(null=True, blank=True)
    activity_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The latest note, call or message on the person's contact (or on the deal, for its main "
        "contact) seen in Kommo: the portal's own, merged into the last touch.",
    )
    name = models.CharField(max_length=255, blank=True)
    source = models.CharField(max_length=20, choices=Source.choices)
    notes = models.TextField(blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("lead", "role__sort", "name", "id")
        constraints = [
            models.UniqueConstraint(
                fields=("lead", "contact"),
                condition=Q(contact__isnull=False),
                name="stakeholders_contact_once",
            ),
            models.UniqueConstraint(
                fields=("lead", "catalog_element"),
                condition=Q(catalog_element__isnull=False),
                name="stakeholders_element_once",
            ),
            models.CheckConstraint(
                condition=Q(contact__isnull=False) | Q(catalog_element__isnull=False),
                name="stakeholders_contact_or_element",
            ),
        ]
        indexes = [models.Index(fields=("account", "role"), name="stakeholders_account_role")]

    def __str__(self) -> str:
        return f"{self.name or '—'} ({self.role or 'no role'})"

    @property
    def objection_open(self) -> bool:
        return objection_is_open(
            text=self.objection, weight=self.objection_weight, resolved_at=self.objection_resolved_at
        )

    def approval_expires_at(self) -> dt.datetime | None:
        days = self.role.approval_valid_days if self.role is not None else None
        return approval_expiry(
            approval=self.approval_status, decided_at=self.approval_decided_at, valid_days=days
        )

    def approval_state(self, now: dt.datetime) -> str:
        """The approval as a person reads it: ``expired`` for an approval past its role's expiry."""
        expires = self.approval_expires_at()
        return APPROVAL_EXPIRED if expires is not None and expires <= now else self.approval_status


APPROVAL_EXPIRED = "expired"


def approval_expiry(
    *, approval: str, decided_at: dt.datetime | None, valid_days: int | None
) -> dt.datetime | None:
    """When an approval stops counting: ``valid_days`` after it was given; None while it does not expire
    (no expiry on the role, no approval, or no known day of the decision)."""
    if approval != Approval.APPROVED or decided_at is None or valid_days is None:
        return None
    return decided_at + dt.timedelta(days=valid_days)


def objection_is_open(*, text: str, weight: object, resolved_at: dt.datetime | None) -> bool:
    """An objection is open when one is stated (a text or a weight) and it has no resolution day."""
    return bool(text.strip() or weight is not None) and resolved_at is None


class StakeholderEvent(models.Model):
    """One change of one stakeholder's attribute, old → new: the stakeholders' history.

    Written by ``stakeholders_derive_for_leads`` — the one place every path that changes a stakeholder goes
    through (the manager's pages, webhooks, syncs, intake all change Kommo's objects and the mirror, and
    the mirror re-derives) — so no change is recorded twice or missed. ``field="presence"`` is the person
    joining (old None) or leaving (new None) the deal. ``at`` is when it happened as far as Kommo tells
    (the changed object's ``updated_at``, never later than when the portal saw it); ``recorded_at`` is when
    the portal wrote the row. Values are JSON: role pk, approval state, ISO times, decimal strings, text.
    """

    class Field(models.TextChoices):
        PRESENCE = "presence", "On the deal"
        ROLE = "role", "Role"
        APPROVAL_STATUS = "approval_status", "Approval"
        APPROVAL_REQUESTED_AT = "approval_requested_at", "Approval requested"
        APPROVAL_DECIDED_AT = "approval_decided_at", "Approval decided"
        LAST_TOUCH = "last_touch", "Last touch"
        OBJECTION = "objection", "Objection"
        OBJECTION_WEIGHT = "objection_weight", "Objection weight"
        OBJECTION_RAISED_AT = "objection_raised_at", "Objection raised"
        OBJECTION_RESOLVED_AT = "objection_resolved_at", "Objection resolved"

    class Source(models.TextChoices):
        MANAGER = "manager", "Manager page"
        WEBHOOK = "webhook", "Kommo edit (webhook)"
        SYNC = "sync", "Kommo edit (sync)"
        INTAKE = "intake", "Intake"
        PORTAL = "portal", "The portal"

    account = models.ForeignKey("kommo.KommoAccount", on_delete=models.CASCADE, related_name="+")
    lead = models.ForeignKey("kommo.Lead", on_delete=models.CASCADE, related_name="stakeholder_events")
    # Not a foreign key: the history outlives the derived row (a person removed from the deal).
    stakeholder_id = models.PositiveBigIntegerField()
    name = models.CharField(max_length=255, blank=True)
    field = models.CharField(max_length=24, choices=Field.choices)
    old = models.JSONField(null=True, blank=True)
    new = models.JSONField(null=True, blank=True)
    at = models.DateTimeField()
    recorded_at = models.DateTimeField(auto_now_add=True)
    source = models.CharField(max_length=10, choices=Source.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kommo_event_id = models.CharField(
        max_length=64,
        blank=True,
        default="",
        help_text="The Kommo event this change was read from (a past change of a field, read back by the "
        "history backfill); empty for the changes derivation saw.",
    )

    class Meta:
        ordering = ("lead", "at", "id")
        indexes = [
            models.Index(fields=("lead", "at"), name="stakeholders_event_lead_at"),
            models.Index(fields=("account", "at"), name="stakeholders_event_account_at"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=("stakeholder_id", "kommo_event_id", "field"),
                condition=~Q(kommo_event_id=""),
                name="stakeholders_event_kommo_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name or self.stakeholder_id}: {self.get_field_display()} {self.old!r} → {self.new!r}"
