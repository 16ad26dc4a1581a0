"""Prepare a connected Kommo account for the portal: the stakeholder fields, the "Stakeholders" catalog,
the webhook subscription, and the field mappings that tie them to the portal's roles.

Everything is looked up before it is created (fields by code then name, the catalog by name, the
webhook by destination), so running it again creates nothing new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.utils.text import slugify

from apps.kommo.client import KommoClient
from apps.kommo.models import KommoAccount
from apps.kommo.types import CatalogWrite, CustomField, CustomFieldEnum, CustomFieldType, CustomFieldWrite
from apps.stakeholders.derivation import person_key
from apps.stakeholders.models import KOMMO_APPROVALS, FieldMapping, FieldMappingValue, Role

ROLE_FIELD_NAME = "Role in the purchase"
ROLE_FIELD_CODE = "PORTAL_PURCHASE_ROLE"
CATALOG_NAME = "Stakeholders"
CATALOG_ROLE = "Role"
CATALOG_APPROVAL = "Approval status"
CATALOG_LAST_TOUCH = "Last touch"
CATALOG_APPROVAL_REQUESTED = "Approval requested"
CATALOG_APPROVAL_DECIDED = "Approval decided"
CATALOG_OBJECTION = "Objection"
CATALOG_OBJECTION_WEIGHT = "Objection weight"
CATALOG_OBJECTION_RAISED = "Objection raised"
CATALOG_OBJECTION_RESOLVED = "Objection resolved"

# The catalog's plain fields (name, Kommo type, the attribute it holds), found by name or created.
CATALOG_PLAIN_FIELDS = (
    (CATALOG_LAST_TOUCH, CustomFieldType.DATE, FieldMapping.Attribute.LAST_TOUCH),
    (CATALOG_APPROVAL_REQUESTED, CustomFieldType.DATE, FieldMapping.Attribute.APPROVAL_REQUESTED),
    (CATALOG_APPROVAL_DECIDED, CustomFieldType.DATE, FieldMapping.Attribute.APPROVAL_DECIDED),
    (CATALOG_OBJECTION, CustomFieldType.TEXTAREA, FieldMapping.Attribute.OBJECTION),
    (CATALOG_OBJECTION_WEIGHT, CustomFieldType.NUMERIC, FieldMapping.Attribute.OBJECTION_WEIGHT),
    (CATALOG_OBJECTION_RAISED, CustomFieldType.DATE, FieldMapping.Attribute.OBJECTION_RAISED),
    (CATALOG_OBJECTION_RESOLVED, CustomFieldType.DATE, FieldMapping.Attribute.OBJECTION_RESOLVED),
)

# What the portal listens to. Catalog-element events exist in Kommo's interface but have no documented
# settings code (API.md §12.1): their values reach the mirror through the periodic sync.
WEBHOOK_SETTINGS = (
    "add_lead",
    "update_lead",
    "status_lead",
    "delete_lead",
    "restore_lead",
    "responsible_lead",
    "add_contact",
    "update_contact",
    "delete_contact",
    "restore_contact",
    "add_company",
    "update_company",
    "delete_company",
    "restore_company",
    # A note, call or message on a deal or a contact is a touch of its people (docs/stakeholders.md).
    "note_lead",
    "note_contact",
    # A task added to or completed on a deal re-fetches the deal (its closest_task_at: stuck deals).
    "add_task",
    "update_task",
)


@dataclass
class BootstrapReport:
    """What a run created in Kommo, what it found already there, and what needs a person."""

    created: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    mappings_changed: bool = False


def _find_field(fields: Sequence[CustomField], *, name: str, code: str | None = None) -> CustomField | None:
    if code is not None:
        by_code = next((f for f in fields if (f.code or "").upper() == code), None)
        if by_code is not None:
            return by_code
    return next((f for f in fields if person_key(f.name) == person_key(name)), None)


def roles_match_enums(roles: Sequence[Role], enums: Sequence[CustomFieldEnum]) -> dict[int, Role]:
    """Kommo enum id → Role: by label, then by code, then by one label starting with the other, then —
    for what is left, when as many options as roles are left — by sort order."""
    matched: dict[int, Role] = {}
    free_roles = list(roles)
    free_enums = sorted(enums, key=lambda enum: (enum.sort, enum.id))
    tests = (
        lambda enum, role: person_key(enum.value) == person_key(role.label),
        lambda enum, role: slugify(enum.code or enum.value).replace("-", "_") == role.code,
        lambda enum, role: (
            person_key(role.label).startswith(person_key(enum.value))
            or person_key(enum.value).startswith(person_key(role.label))
        ),
    )
    for test in tests:
        for enum in list(free_enums):
            role = next((role for role in free_roles if test(enum, role)), None)
            if role is not None:
                matched[enum.id] = role
                free_roles.remove(role)
                free_enums.remove(enum)
    if free_enums and len(free_enums) == len(free_roles):
        for enum, role in zip(free_enums, sorted(free_roles, key=lambda r: (r.sort, r.pk)), strict=True):
            matched[enum.id] = role
    return matched


def approvals_match_enums(enums: Sequence[CustomFieldEnum]) -> dict[int, str]:
    by_label = {person_key(str(approval.label)): approval.value for approval in KOMMO_APPROVALS}
    return {enum.id: by_label[person_key(enum.value)] for enum in enums if person_key(enum.value) in by_label}


class _Bootstrap:
    def __init__(self, *, account: KommoAccount, client: KommoClient, report: BootstrapReport) -> None:
        self.account = account
        self.client = client
        self.report = report
        self.roles = list(Role.objects.filter(active=True).order_by("sort", "id"))

    def contact_role_field(self) -> CustomField:
        fields = list(self.client.custom_fields_list("contacts"))
        found = _find_field(fields, name=ROLE_FIELD_NAME, code=ROLE_FIELD_CODE)
        if found is not None:
            self.report.found.append(f"contact field “{found.name}” ({found.id})")
            return found
        (created,) = self.client.custom_fields_create(
            "contacts",
            [
                CustomFieldWrite(
                    name=ROLE_FIELD_NAME,
                    type=CustomFieldType.SELECT,
                    code=ROLE_FIELD_CODE,
                    enums=tuple(role.label for role in self.roles),
                )
            ],
        )
        self.report.created.append(f"contact field “{created.name}” ({created.id})")
        return created

    def catalog_id(self) -> int:
        found = next(
            (c for c in self.client.catalogs_list() if person_key(c.name) == person_key(CATALOG_NAME)), None
        )
        if found is not None:
            self.report.found.append(f"catalog “{found.name}” ({found.id})")
            return found.id
        created = self.client.catalog_create(CatalogWrite(name=CATALOG_NAME, can_link_multiple=True))
        self.report.created.append(f"catalog “{created.name}” ({created.id})")
        return created.id

    def catalog_fields(self, catalog_id: int) -> dict[str, CustomField]:
        entity = f"catalogs/{catalog_id}"
        wanted = {
            CATALOG_ROLE: CustomFieldWrite(
                name=CATALOG_ROLE, type=CustomFieldType.SELECT, enums=tuple(role.label for role in self.roles)
            ),
            CATALOG_APPROVAL: CustomFieldWrite(
                name=CATALOG_APPROVAL,
                type=CustomFieldType.SELECT,
                enums=tuple(str(approval.label) for approval in KOMMO_APPROVALS),
            ),
            **{
                name: CustomFieldWrite(name=name, type=field_type)
                for name, field_type, _attribute in CATALOG_PLAIN_FIELDS
            },
        }
        existing = list(self.client.custom_fields_list(entity))
        fields: dict[str, CustomField] = {}
        missing: list[CustomFieldWrite] = []
        for name, write in wanted.items():
            found = _find_field(existing, name=name)
            if found is None:
                missing.append(write)
            else:
                fields[name] = found
                self.report.found.append(f"catalog field “{found.name}” ({found.id})")
        if missing:
            for created in self.client.custom_fields_create(entity, missing):
                fields[next(name for name in wanted if person_key(name) == person_key(created.name))] = (
                    created
                )
                self.report.created.append(f"catalog field “{created.name}” ({created.id})")
        return fields

    def webhook(self, destination: str) -> None:
        current = next(
            (w for w in self.client.webhooks_list(destination) if w.destination == destination), None
        )
        if current is not None and set(WEBHOOK_SETTINGS) <= set(current.settings) and not current.disabled:
            self.report.found.append(f"webhook to {destination}")
            return
        self.client.webhooks_subscribe(
            destination, sorted(set(WEBHOOK_SETTINGS) | set(current.settings if current else ()))
        )
        what = "webhook settings updated" if current is not None else "webhook"
        self.report.created.append(f"{what} to {destination}")

    def mapping(
        self,
        *,
        attribute: str,
        source: str,
        kommo_field: CustomField,
        catalog_id: int | None = None,
    ) -> None:
        mapping, created = FieldMapping.objects.get_or_create(
            account=self.account,
            attribute=attribute,
            source=source,
            defaults={"field_id": kommo_field.id, "catalog_id": catalog_id},
        )
        if not created and (mapping.field_id, mapping.catalog_id) != (kommo_field.id, catalog_id):
            mapping.field_id, mapping.catalog_id = kommo_field.id, catalog_id
            mapping.save(update_fields=["field_id", "catalog_id", "modified"])
            mapping.values.all().delete()
            created = True
        self.report.mappings_changed |= created
        if attribute == FieldMapping.Attribute.ROLE:
            by_enum = roles_match_enums(self.roles, kommo_field.enums)
            wanted = [FieldMappingValue(mapping=mapping, enum_id=e, role=r) for e, r in by_enum.items()]
            unmatched = [role.label for role in self.roles if role not in by_enum.values()]
            if unmatched:
                self.report.warnings.append(
                    f"“{kommo_field.name}” ({kommo_field.id}) has no option for: {', '.join(unmatched)}; "
                    "add them in Kommo, then map them in the admin"
                )
        elif attribute == FieldMapping.Attribute.APPROVAL_STATUS:
            approvals = approvals_match_enums(kommo_field.enums)
            wanted = [FieldMappingValue(mapping=mapping, enum_id=e, approval=a) for e, a in approvals.items()]
        else:
            return
        # What sales ops mapped stays: an option, a role or an approval already mapped is not added again.
        kept = list(mapping.values.values_list("enum_id", "role_id", "approval"))
        enums = {enum_id for enum_id, _, _ in kept}
        roles = {role_id for _, role_id, _ in kept if role_id is not None}
        approvals_kept = {approval for _, _, approval in kept if approval}
        new = [
            value
            for value in wanted
            if value.enum_id not in enums
            and value.role_id not in roles
            and value.approval not in approvals_kept
        ]
        FieldMappingValue.objects.bulk_create(new)
        self.report.mappings_changed |= bool(new)


def account_bootstrap(
    *, account: KommoAccount, public_url: str, client: KommoClient | None = None
) -> BootstrapReport:
    """Create (or find) the stakeholder fields, catalog and webhook in Kommo and map them locally.
    Existing option mappings are kept: sales ops may have corrected them in the admin."""
    report = BootstrapReport()
    run = _Bootstrap(account=account, client=client or KommoClient(account), report=report)
    role_field = run.contact_role_field()
    catalog_id = run.catalog_id()
    catalog_fields = run.catalog_fields(catalog_id)
    run.webhook(f"{public_url.rstrip('/')}/webhooks/kommo/{account.webhook_token}/")
    contact, catalog = FieldMapping.Source.CONTACT_FIELD, FieldMapping.Source.CATALOG_FIELD
    with transaction.atomic():
        run.mapping(attribute=FieldMapping.Attribute.ROLE, source=contact, kommo_field=role_field)
        for attribute, name in (
            (FieldMapping.Attribute.ROLE, CATALOG_ROLE),
            (FieldMapping.Attribute.APPROVAL_STATUS, CATALOG_APPROVAL),
            *((attribute, name) for name, _type, attribute in CATALOG_PLAIN_FIELDS),
        ):
            run.mapping(
                attribute=attribute, source=catalog, kommo_field=catalog_fields[name], catalog_id=catalog_id
            )
    return report
