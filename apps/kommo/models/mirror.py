"""The local mirror of a Kommo account: what reports, pages and gates read instead of calling Kommo.

Every row belongs to one :class:`~apps.kommo.models.account.KommoAccount` and carries Kommo's id as
``kommo_id`` (unique per account), the promoted columns that queries need, Kommo's own timestamps as
datetimes, ``raw`` (the last payload, as Kommo sent it) and a soft delete. Rows are written only by the
upserts in :mod:`apps.kommo.services.mirror`; the admin shows them read-only.

References to other mirrored rows keep Kommo's id next to the foreign key (``status_kommo_id`` next to
``status``): Kommo can name a stage, user or contact the mirror has not seen yet, and the foreign key is
filled as soon as it has.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import models

from apps.core.models import TimeStampedModel
from apps.kommo import types
from apps.kommo.exceptions import KommoPayloadError

WON_STATUS_ID = 142
LOST_STATUS_ID = 143


class MirrorModel(TimeStampedModel):
    """What every mirrored entity has. ``created``/``modified`` are local bookkeeping times."""

    account = models.ForeignKey("kommo.KommoAccount", on_delete=models.CASCADE, related_name="+")
    kommo_id = models.BigIntegerField("Kommo id")
    raw = models.JSONField("last payload", default=dict, blank=True)
    is_deleted = models.BooleanField(default=False)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta(TimeStampedModel.Meta):
        abstract = True

    @property
    def field_values(self) -> dict[int, types.CustomFieldValue]:
        """The custom field values of the last payload, typed, by field id (malformed entries skipped):
        what the apps above the boundary read instead of ``raw``."""
        values: dict[int, types.CustomFieldValue] = {}
        items = self.raw.get("custom_fields_values") if isinstance(self.raw, Mapping) else None
        for item in items if isinstance(items, list) else []:
            try:
                value = types.CustomFieldValue.from_api(item)
            except KommoPayloadError:
                continue
            values[value.field_id] = value
        return values

    def _embedded_ids(self, key: str) -> frozenset[int]:
        embedded = self.raw.get("_embedded") if isinstance(self.raw, Mapping) else None
        items: Any = embedded.get(key) if isinstance(embedded, Mapping) else None
        if not isinstance(items, list):
            return frozenset()
        return frozenset(
            item["id"] for item in items if isinstance(item, Mapping) and isinstance(item.get("id"), int)
        )


class Pipeline(MirrorModel):
    name = models.CharField(max_length=255)
    sort = models.IntegerField(default=0)
    is_main = models.BooleanField(default=False)
    is_unsorted_on = models.BooleanField(default=False)
    is_archive = models.BooleanField(default=False)

    class Meta:
        ordering = ["account", "sort", "kommo_id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "kommo_id"], name="kommo_pipeline_unique_per_account")
        ]

    def __str__(self) -> str:
        return self.name


class Status(MirrorModel):
    """A stage of a pipeline. Kommo gives 142 (won) and 143 (lost) the same id in every pipeline, so a
    status is unique per (account, pipeline, kommo_id), not per account."""

    class Type(models.IntegerChoices):
        REGULAR = 0, "regular"
        INCOMING = 1, "incoming leads"

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="statuses")
    name = models.CharField(max_length=255)
    sort = models.IntegerField(default=0)
    type = models.PositiveSmallIntegerField(choices=Type.choices, default=Type.REGULAR)
    color = models.CharField(max_length=16, blank=True)
    is_editable = models.BooleanField(default=True)
    is_won = models.BooleanField(default=False)
    is_lost = models.BooleanField(default=False)

    class Meta:
        verbose_name = "stage"
        verbose_name_plural = "stages"
        ordering = ["pipeline", "sort", "kommo_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "pipeline", "kommo_id"], name="kommo_status_unique_per_pipeline"
            )
        ]

    def __str__(self) -> str:
        return f"{self.pipeline.name} / {self.name}" if self.pipeline_id else self.name

    @property
    def is_closed(self) -> bool:
        return self.is_won or self.is_lost


class KommoUser(MirrorModel):
    name = models.CharField(max_length=255)
    email = models.CharField(max_length=254, blank=True)
    is_admin = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    group_kommo_id = models.BigIntegerField(null=True, blank=True)
    role_kommo_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = "Kommo user"
        ordering = ["account", "name"]
        constraints = [
            models.UniqueConstraint(fields=["account", "kommo_id"], name="kommo_user_unique_per_account")
        ]

    def __str__(self) -> str:
        return self.name or f"user {self.kommo_id}"


class CustomField(MirrorModel):
    """A custom field definition of leads, contacts, companies or one catalog."""

    class EntityType(models.TextChoices):
        LEADS = "leads"
        CONTACTS = "contacts"
        COMPANIES = "companies"
        CATALOGS = "catalogs"

    entity_type = models.CharField(max_length=16, choices=EntityType.choices)
    catalog_kommo_id = models.BigIntegerField(null=True, blank=True)
    name = models.CharField(max_length=255)
    code = models.CharField(max_length=100, blank=True)
    type = models.CharField(max_length=32)
    sort = models.IntegerField(default=0)
    is_predefined = models.BooleanField(default=False)
    is_api_only = models.BooleanField(default=False)

    class Meta:
        ordering = ["account", "entity_type", "sort", "kommo_id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "kommo_id"], name="kommo_field_unique_per_account")
        ]
        indexes = [models.Index(fields=["account", "entity_type"], name="kommo_field_entity")]

    def __str__(self) -> str:
        return f"{self.entity_type}: {self.name}"


class CustomFieldEnum(models.Model):
    """One option of a select / multiselect / radiobutton / category field (or a multitext subtype)."""

    field = models.ForeignKey(CustomField, on_delete=models.CASCADE, related_name="enums")
    kommo_id = models.BigIntegerField("Kommo id")
    value = models.CharField(max_length=255)
    sort = models.IntegerField(default=0)
    code = models.CharField(max_length=100, blank=True)

    class Meta:
        verbose_name = "custom field option"
        ordering = ["field", "sort", "kommo_id"]
        constraints = [
            models.UniqueConstraint(fields=["field", "kommo_id"], name="kommo_field_enum_unique_per_field")
        ]

    def __str__(self) -> str:
        return self.value


class Catalog(MirrorModel):
    """A list ("catalog"): ``regular`` or ``products``."""

    name = models.CharField(max_length=255)
    type = models.CharField(max_length=16, default="regular")
    sort = models.IntegerField(default=0)
    created_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["account", "sort", "kommo_id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "kommo_id"], name="kommo_catalog_unique_per_account")
        ]

    def __str__(self) -> str:
        return self.name


class CatalogElement(MirrorModel):
    catalog = models.ForeignKey(Catalog, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    catalog_kommo_id = models.BigIntegerField()
    name = models.CharField(max_length=255)
    created_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["account", "catalog_kommo_id", "kommo_id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "kommo_id"], name="kommo_element_unique_per_account")
        ]
        indexes = [models.Index(fields=["account", "catalog_kommo_id"], name="kommo_element_catalog")]

    def __str__(self) -> str:
        return self.name


class Company(MirrorModel):
    name = models.CharField(max_length=255, blank=True)
    responsible_user = models.ForeignKey(
        KommoUser, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    responsible_user_kommo_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "companies"
        ordering = ["account", "name", "kommo_id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "kommo_id"], name="kommo_company_unique_per_account")
        ]
        indexes = [models.Index(fields=["account", "updated_at"], name="kommo_company_updated")]

    def __str__(self) -> str:
        return self.name or f"company {self.kommo_id}"


class Contact(MirrorModel):
    """A person. ``emails``/``phones`` are the normalised lookup keys (lower-cased e-mails, E.164 phones;
    values that do not normalise are left out); :class:`ContactChannel` indexes them for lookup."""

    name = models.CharField(max_length=255, blank=True)
    first_name = models.CharField(max_length=255, blank=True)
    last_name = models.CharField(max_length=255, blank=True)
    responsible_user = models.ForeignKey(
        KommoUser, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    responsible_user_kommo_id = models.BigIntegerField(null=True, blank=True)
    company = models.ForeignKey(Company, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    company_kommo_id = models.BigIntegerField(null=True, blank=True)
    emails = models.JSONField(default=list, blank=True)
    phones = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["account", "name", "kommo_id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "kommo_id"], name="kommo_contact_unique_per_account")
        ]
        indexes = [models.Index(fields=["account", "updated_at"], name="kommo_contact_updated")]

    def __str__(self) -> str:
        return self.name or f"contact {self.kommo_id}"

    @property
    def linked_element_ids(self) -> frozenset[int]:
        """Kommo ids of the catalog elements linked to this contact (payloads fetched with
        ``with=catalog_elements``; none otherwise)."""
        return self._embedded_ids("catalog_elements")


class ContactChannel(models.Model):
    """One normalised e-mail or phone of a contact: the lookup index intake deduplicates by."""

    class Kind(models.TextChoices):
        EMAIL = "email"
        PHONE = "phone"

    account = models.ForeignKey("kommo.KommoAccount", on_delete=models.CASCADE, related_name="+")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="channels")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    value = models.CharField(max_length=254)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["contact", "kind", "value"], name="kommo_channel_unique")
        ]
        indexes = [models.Index(fields=["account", "kind", "value"], name="kommo_channel_lookup")]

    def __str__(self) -> str:
        return f"{self.kind}: {self.value}"


class Lead(MirrorModel):
    """A Kommo lead: the business's deal."""

    name = models.CharField(max_length=255, blank=True)
    price = models.BigIntegerField(default=0)
    pipeline = models.ForeignKey(Pipeline, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    pipeline_kommo_id = models.BigIntegerField()
    status = models.ForeignKey(Status, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    status_kommo_id = models.BigIntegerField()
    responsible_user = models.ForeignKey(
        KommoUser, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    responsible_user_kommo_id = models.BigIntegerField(null=True, blank=True)
    company = models.ForeignKey(Company, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    company_kommo_id = models.BigIntegerField(null=True, blank=True)
    loss_reason_kommo_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    fetched_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the portal last re-fetched this deal by id (the request's start): the row is at "
        "least as fresh as Kommo's state at that moment. Sync listings leave it alone.",
    )

    class Meta:
        verbose_name = "deal"
        verbose_name_plural = "deals"
        ordering = ["account", "-updated_at", "kommo_id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "kommo_id"], name="kommo_lead_unique_per_account")
        ]
        indexes = [
            models.Index(fields=["account", "status"], name="kommo_lead_status"),
            models.Index(fields=["account", "pipeline_kommo_id", "status_kommo_id"], name="kommo_lead_stage"),
            models.Index(fields=["account", "updated_at"], name="kommo_lead_updated"),
            models.Index(fields=["account", "responsible_user_kommo_id"], name="kommo_lead_responsible"),
        ]

    def __str__(self) -> str:
        return self.name or f"deal {self.kommo_id}"

    def payload(self) -> types.Lead | None:
        """The deal as Kommo last sent it, typed; None when the stored payload cannot be read as this deal."""
        try:
            data = types.Lead.from_api(self.raw)
        except (KommoPayloadError, ValueError, TypeError):
            return None
        return data if data.id == self.kommo_id else None

    @property
    def tag_names(self) -> tuple[str, ...]:
        """The deal's tags, as last fetched."""
        embedded = self.raw.get("_embedded") if isinstance(self.raw, Mapping) else None
        tags = embedded.get("tags") if isinstance(embedded, Mapping) else None
        return tuple(str(tag.get("name", "")) for tag in tags or [] if isinstance(tag, Mapping))

    @property
    def is_won(self) -> bool:
        return self.status_kommo_id == WON_STATUS_ID

    @property
    def is_lost(self) -> bool:
        return self.status_kommo_id == LOST_STATUS_ID


class LeadContact(models.Model):
    """A contact linked to a deal (``_embedded.contacts`` of the lead)."""

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="contact_links")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    contact_kommo_id = models.BigIntegerField()
    is_main = models.BooleanField(default=False)

    class Meta:
        verbose_name = "deal contact"
        constraints = [
            models.UniqueConstraint(fields=["lead", "contact_kommo_id"], name="kommo_lead_contact_unique")
        ]
        indexes = [models.Index(fields=["contact_kommo_id"], name="kommo_lead_contact_kid")]

    def __str__(self) -> str:
        return f"{self.lead_id} ↔ contact {self.contact_kommo_id}"


class LeadCatalogElement(models.Model):
    """A catalog element linked to a deal (``_embedded.catalog_elements`` of the lead)."""

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="element_links")
    element = models.ForeignKey(
        CatalogElement, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    element_kommo_id = models.BigIntegerField()
    catalog_kommo_id = models.BigIntegerField(null=True, blank=True)
    quantity = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)

    class Meta:
        verbose_name = "deal catalog element"
        constraints = [
            models.UniqueConstraint(fields=["lead", "element_kommo_id"], name="kommo_lead_element_unique")
        ]
        indexes = [models.Index(fields=["element_kommo_id"], name="kommo_lead_element_kid")]

    def __str__(self) -> str:
        return f"{self.lead_id} ↔ element {self.element_kommo_id}"


class StageChange(models.Model):
    """One move of a deal between stages. Several sources report the same move (the webhook, the events
    API, a sync that sees the stage differ, the portal's own move back); it is one row, enriched by each
    (see :func:`apps.kommo.services.mirror.stage_change_record`)."""

    class Source(models.TextChoices):
        WEBHOOK = "webhook"
        SYNC = "sync"
        EVENTS = "events"
        GATE = "gate"

    account = models.ForeignKey("kommo.KommoAccount", on_delete=models.CASCADE, related_name="+")
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="stage_changes")
    from_status_kommo_id = models.BigIntegerField(null=True, blank=True)
    from_pipeline_kommo_id = models.BigIntegerField(null=True, blank=True)
    to_status_kommo_id = models.BigIntegerField()
    to_pipeline_kommo_id = models.BigIntegerField(null=True, blank=True)
    from_status = models.ForeignKey(
        Status, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    to_status = models.ForeignKey(Status, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    at = models.DateTimeField(db_index=True)
    at_is_exact = models.BooleanField(
        default=True, help_text="False: only known to be no later than this (seen by comparing stages)."
    )
    source = models.CharField(max_length=8, choices=Source.choices)
    sources = models.JSONField("reported by", default=list, blank=True)
    moved_by = models.ForeignKey(
        KommoUser, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    moved_by_kommo_user_id = models.BigIntegerField(null=True, blank=True)
    kommo_event_id = models.CharField(max_length=64, null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["lead", "at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "kommo_event_id"],
                condition=models.Q(kommo_event_id__isnull=False),
                name="kommo_stage_change_event_unique",
            )
        ]
        indexes = [
            models.Index(fields=["lead", "to_status_kommo_id", "at"], name="kommo_stage_change_match"),
            models.Index(fields=["account", "at"], name="kommo_stage_change_at"),
        ]

    def __str__(self) -> str:
        # The stages by name when the mirror holds them (a link to this move reads "DM qualification →
        # Technical validation"), their Kommo ids otherwise.
        source = self.from_status.name if self.from_status is not None else self.from_status_kommo_id
        target = self.to_status.name if self.to_status is not None else self.to_status_kommo_id
        moved = f"{source or '—'} → {target}"
        return f"{moved} at {self.at:%Y-%m-%d %H:%M}"


class StageStay(models.Model):
    """One stay of a deal in one stage: from the move (or the deal's creation) that brought it there to the
    move that took it away, or still open (``left_at`` null). A deal that re-enters a stage has several.

    Derived only from the deal's :class:`StageChange` rows, its ``created_at`` and (for a deal that never
    moved) its current stage, by :func:`apps.kommo.services.stays.lead_stays_refresh`, which the mirror
    calls in the same transaction as every move it records; ``kommo_stays_rebuild`` derives them again
    from scratch and must give the same rows. Time in stage, funnels and legal-review times read these.

    ``earlier_seconds`` is written with the stay so that a report's cumulative time in stage is a column
    expression rather than a look-up of each stay's predecessors: the exact sum of the earlier stays'
    lengths in microseconds, divided once (so the SQL seed's ``numeric`` sum gives the same float)."""

    class LeftHow(models.TextChoices):
        FORWARD = "forward"
        BACK = "back"
        WON = "won"
        LOST = "lost"
        OTHER_PIPELINE = "pipeline", "to another pipeline"

    account = models.ForeignKey("kommo.KommoAccount", on_delete=models.CASCADE, related_name="+")
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="stage_stays")
    pipeline = models.ForeignKey(Pipeline, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    pipeline_kommo_id = models.BigIntegerField(null=True, blank=True)
    status = models.ForeignKey(Status, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    status_kommo_id = models.BigIntegerField()
    entered_at = models.DateTimeField()
    left_at = models.DateTimeField(null=True, blank=True)
    next_status = models.ForeignKey(
        Status, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    next_status_kommo_id = models.BigIntegerField(null=True, blank=True)
    next_pipeline_kommo_id = models.BigIntegerField(null=True, blank=True)
    left_how = models.CharField(max_length=8, choices=LeftHow.choices, blank=True)
    earlier_seconds = models.FloatField(
        default=0.0,
        help_text="The deal's earlier completed stays in the same stage (and pipeline), summed: this stay's "
        "cumulative time is this plus its own length.",
    )

    class Meta:
        verbose_name = "stage stay"
        ordering = ["lead", "entered_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["lead"], condition=models.Q(left_at__isnull=True), name="kommo_stage_stay_one_open"
            ),
        ]
        indexes = [
            # Completed stays of a stage in a period (time in stage, legal review, stuck thresholds).
            models.Index(fields=["account", "status", "left_at"], name="kommo_stay_status_left"),
            # Entries into a stage in a period (funnel).
            models.Index(fields=["account", "status", "entered_at"], name="kommo_stay_status_entered"),
            # The open stays (pipeline by stage, age of open stays, stuck deals).
            models.Index(
                fields=["account", "status"],
                condition=models.Q(left_at__isnull=True),
                name="kommo_stay_open",
            ),
        ]

    def __str__(self) -> str:
        until = f"{self.left_at:%Y-%m-%d %H:%M}" if self.left_at else "now"
        return f"{self.lead_id}: {self.status_kommo_id} {self.entered_at:%Y-%m-%d %H:%M} → {until}"


class SyncState(models.Model):
    """Where the sync of one resource of one account stands: resumable after an interruption.

    ``cursor`` is the resource's own position (e.g. ``{"mode": "full", "page": 7, "last_id": 123}`` while a
    full run is under way, ``{"updated_at": 1700000000, "ids": [...]}`` for the incremental one, the last
    event time and ids for the events reconciliation). ``started_at`` is set while a run is unfinished.
    """

    account = models.ForeignKey("kommo.KommoAccount", on_delete=models.CASCADE, related_name="+")
    resource = models.CharField(max_length=64)
    cursor = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_full_at = models.DateTimeField(null=True, blank=True)
    seen = models.PositiveIntegerField("items in the current or last run", default=0)
    calls = models.PositiveIntegerField("API calls in the current or last run", default=0)
    error = models.TextField(blank=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "sync state"
        constraints = [
            models.UniqueConstraint(fields=["account", "resource"], name="kommo_sync_state_unique")
        ]

    def __str__(self) -> str:
        return f"{self.resource} ({self.account_id})"
