"""Reads of the intake app."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q

from apps.intake.models import IntakeSource, IntakeSubmission
from apps.kommo.models import KommoAccount
from apps.kommo.models.mirror import Company, Contact, ContactChannel, CustomField, Lead, LeadCatalogElement
from apps.stakeholders.models import FieldMapping, Role

KEY_SCHEME = "ik"

# The deal field intake writes its marker into (a text field of leads, created on first use).
MARKER_FIELD_CODE = "PORTAL_INTAKE"
MARKER_FIELD_NAME = "Intake submission"

# How long a process trusts the role codes it read; a save in this process forgets them at once.
ROLE_CODES_TTL = 60.0


def key_hash(key: str) -> str:
    """SHA-256 of the whole key. Keys are 256-bit random strings, so a fast hash is enough: there is
    nothing to brute-force that a slow hash would protect."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_prefix_of(key: str) -> str | None:
    scheme, _, rest = key.partition("_")
    prefix, _, secret = rest.partition("_")
    if scheme != KEY_SCHEME or not prefix or not secret:
        return None
    return prefix


def intake_source_by_key(*, key: str) -> IntakeSource | None:
    """The active source the key belongs to, or None."""
    prefix = key_prefix_of(key)
    if prefix is None:
        return None
    source = next(iter(IntakeSource.objects.filter(key_prefix=prefix, is_active=True)[:1]), None)
    if source is None or not hmac.compare_digest(source.key_hash, key_hash(key)):
        return None
    return source


def intake_submission_for_source(*, source: IntakeSource, submission_id: int) -> IntakeSubmission | None:
    """A submission, only when it belongs to ``source``."""
    return IntakeSubmission.objects.filter(source=source, pk=submission_id).first()


_role_codes: tuple[float, frozenset[str]] | None = None
_role_codes_lock = threading.Lock()


def active_role_codes() -> frozenset[str]:
    """Codes of the active roles, read at most once a minute per process (roles change rarely; a
    ``Role`` saved or deleted in this process is seen at once, in another one within the minute)."""
    global _role_codes
    cached = _role_codes
    now = time.monotonic()
    if cached is not None and now - cached[0] < ROLE_CODES_TTL:
        return cached[1]
    codes = frozenset(Role.objects.filter(active=True).values_list("code", flat=True))
    with _role_codes_lock:
        _role_codes = (now, codes)
    return codes


def active_role_codes_forget(**_: object) -> None:
    global _role_codes
    with _role_codes_lock:
        _role_codes = None


@dataclass(frozen=True)
class RoleTarget:
    """Where an account keeps a stakeholder's role: a select field of contacts (``catalog_id`` None) or of
    the catalog whose elements are linked to deals; ``enums`` maps Role codes to the field's option ids."""

    field_id: int
    catalog_id: int | None
    enums: dict[str, int]


@dataclass(frozen=True)
class RoleTargets:
    contact_field: RoleTarget | None
    catalog: RoleTarget | None


def role_targets_for_account(*, account: KommoAccount) -> RoleTargets:
    """The account's role field mappings (the stakeholders app's FieldMapping rows)."""
    found: dict[str, RoleTarget] = {}
    mappings = FieldMapping.objects.filter(account=account, attribute=FieldMapping.Attribute.ROLE)
    for mapping in mappings.prefetch_related("values__role"):
        enums = {value.role.code: value.enum_id for value in mapping.values.all() if value.role is not None}
        found[mapping.source] = RoleTarget(
            field_id=mapping.field_id, catalog_id=mapping.catalog_id, enums=enums
        )
    return RoleTargets(
        contact_field=found.get(FieldMapping.Source.CONTACT_FIELD),
        catalog=found.get(FieldMapping.Source.CATALOG_FIELD),
    )


def mirror_contacts_by_identity(*, account: KommoAccount, identities: Iterable[str]) -> dict[str, Contact]:
    """Mirrored contacts (not deleted) by identity (``email:…`` / ``phone:…``); when two contacts share
    one, the oldest in Kommo wins."""
    wanted: dict[str, set[str]] = {"email": set(), "phone": set()}
    for identity in identities:
        kind, _, value = identity.partition(":")
        wanted[kind].add(value)
    channels = (
        ContactChannel.objects.filter(account=account, contact__is_deleted=False)
        .filter(
            Q(kind=ContactChannel.Kind.EMAIL, value__in=wanted["email"])
            | Q(kind=ContactChannel.Kind.PHONE, value__in=wanted["phone"])
        )
        .select_related("contact")
        .order_by("contact__kommo_id")
    )
    found: dict[str, Contact] = {}
    for channel in channels:
        found.setdefault(f"{channel.kind}:{channel.value}", channel.contact)
    return found


def mirror_company_by_name(*, account: KommoAccount, name: str) -> Company | None:
    return (
        Company.objects.filter(account=account, name__iexact=name.strip(), is_deleted=False)
        .order_by("kommo_id")
        .first()
    )


def mirror_contact_field_ids(*, account: KommoAccount) -> dict[str, int]:
    """Kommo ids of the contacts' predefined EMAIL and PHONE fields, when the mirror has them."""
    rows = CustomField.objects.filter(
        account=account,
        entity_type=CustomField.EntityType.CONTACTS,
        code__in=["EMAIL", "PHONE"],
        is_deleted=False,
    ).order_by("-kommo_id")  # the oldest wins
    return {code: kommo_id for code, kommo_id in rows.values_list("code", "kommo_id")}


def mirror_marker_field_id(*, account: KommoAccount) -> int | None:
    """The Kommo id of the deal field intake writes its marker into, when the mirror has it."""
    return (
        CustomField.objects.filter(
            account=account,
            entity_type=CustomField.EntityType.LEADS,
            code=MARKER_FIELD_CODE,
            is_deleted=False,
        )
        .order_by("kommo_id")
        .values_list("kommo_id", flat=True)
        .first()
    )


def mirror_kommo_ids(
    *, model: type[Contact | Company | Lead], account: KommoAccount, kommo_ids: Iterable[int]
) -> set[int]:
    """Which of ``kommo_ids`` the mirror already holds for ``model``."""
    wanted = set(kommo_ids)
    if not wanted:
        return set()
    return set(model.objects.filter(account=account, kommo_id__in=wanted).values_list("kommo_id", flat=True))


def mirror_contacts(*, account: KommoAccount, kommo_ids: Iterable[int]) -> dict[int, Contact]:
    return {row.kommo_id: row for row in Contact.objects.filter(account=account, kommo_id__in=set(kommo_ids))}


def mirror_lead(*, account: KommoAccount, kommo_id: int | None) -> Lead | None:
    if kommo_id is None:
        return None
    return Lead.objects.filter(account=account, kommo_id=kommo_id).first()


def mirror_lead_elements(
    *, account: KommoAccount, lead_kommo_id: int | None, catalog_id: int | None
) -> list[tuple[int, str]]:
    """(Kommo id, name) of the elements of this catalog linked to the deal, as the mirror has them."""
    if lead_kommo_id is None or catalog_id is None:
        return []
    return list(
        LeadCatalogElement.objects.filter(
            lead__account=account,
            lead__kommo_id=lead_kommo_id,
            element__catalog_kommo_id=catalog_id,
            element__is_deleted=False,
        )
        .order_by("element__kommo_id")
        .values_list("element__kommo_id", "element__name")
    )
