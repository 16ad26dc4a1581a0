"""Lead intake: the sources allowed to submit deals, and every submission exactly as it arrived.

A submission is stored before anything else happens (even an invalid one, as ``rejected``), answered with
its id, and processed by a worker; its row is the audit trail of what was asked, what was found in Kommo
and what was created there.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from apps.core.models import TimeStampedModel


class IntakeSource(TimeStampedModel):
    """A form or outreach tool allowed to submit deals to one Kommo account, with its own API key.

    Only a SHA-256 hash of the key is stored; ``key_prefix`` (its public first part) finds the row."""

    name = models.CharField(max_length=200)
    account = models.ForeignKey("kommo.KommoAccount", on_delete=models.PROTECT, related_name="intake_sources")
    key_prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    pipeline_kommo_id = models.BigIntegerField(
        "default pipeline id",
        null=True,
        blank=True,
        help_text="Kommo pipeline id when a submission names none.",
    )
    status_kommo_id = models.BigIntegerField(
        "default stage id", null=True, blank=True, help_text="Kommo status id when a submission names none."
    )
    responsible_user_kommo_id = models.BigIntegerField(
        "responsible user id", null=True, blank=True, help_text="Kommo user id given every new deal."
    )
    tags = models.JSONField(
        default=list, blank=True, help_text='Tag names added to every deal, e.g. ["web"].'
    )
    default_phone_region = models.CharField(
        max_length=2,
        blank=True,
        help_text="ISO 3166 country code (e.g. US, DE) for phone numbers written without a country code.",
    )
    payload_window_hours = models.PositiveIntegerField(
        default=24,
        help_text="Without an Idempotency-Key, the same content within this many hours is one submission.",
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        verbose_name = "intake source"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class IntakeSubmission(TimeStampedModel):
    """One submitted deal with its people. ``idempotency_key`` is the client's ``Idempotency-Key`` header,
    or ``payload:<hash of the normalised payload>`` without one; rejected submissions have none."""

    class Status(models.TextChoices):
        RECEIVED = "received"
        PROCESSING = "processing"
        DONE = "done"
        FAILED = "failed"
        REJECTED = "rejected"

    source = models.ForeignKey(IntakeSource, on_delete=models.PROTECT, related_name="submissions")
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    key_from_header = models.BooleanField(default=False)
    payload_hash = models.CharField(max_length=64, blank=True)
    raw_body = models.TextField("body as received", blank=True)
    payload = models.JSONField(null=True, blank=True)
    normalized = models.JSONField("normalised payload", null=True, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RECEIVED)
    kommo_lead_id = models.BigIntegerField("Kommo lead id", null=True, blank=True)
    kommo_company_id = models.BigIntegerField("Kommo company id", null=True, blank=True)
    kommo_contact_ids = models.JSONField("Kommo contact ids", default=list, blank=True)
    lead_merged = models.BooleanField(
        default=False, help_text="Kommo's duplicate control matched an existing deal."
    )
    kommo_marker = models.CharField(
        "deal marker",
        max_length=64,
        blank=True,
        help_text="Written into the deal's “Intake submission” field by /leads/complex and kept before the "
        "call, so a retry can find a deal whose id was never recorded.",
    )
    contact_outcomes = models.JSONField(default=list, blank=True)
    validation_errors = models.JSONField(default=dict, blank=True)
    kommo_errors = models.JSONField("Kommo validation errors", default=list, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "intake submission"
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="intake_submission_key_once_per_source",
            )
        ]
        indexes = [models.Index(fields=["status", "modified"], name="intake_submission_status")]

    def __str__(self) -> str:
        return f"submission {self.pk} ({self.status})"
