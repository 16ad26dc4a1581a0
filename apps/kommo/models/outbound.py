"""The outbound change queue: every write the portal makes to Kommo on its own initiative.

A change is written in the same transaction as the decision that wants it, then drained in batches by
:func:`apps.kommo.services.outbound.outbound_changes_drain`. ``idempotency_key`` is unique, so the same
intention can never be queued twice; a write whose outcome is unknown (a timeout) is checked in Kommo
before it is sent again.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from apps.core.models import TimeStampedModel


class OutboundChange(TimeStampedModel):
    """One write to Kommo: a lead's stage, a task or a note."""

    class Kind(models.TextChoices):
        LEAD_STATUS = "lead_status", "move a lead to a stage"
        TASK_CREATE = "task_create", "create a task"
        NOTE_CREATE = "note_create", "add a note"

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"
        UNKNOWN = "unknown", "unknown (check before retrying)"
        SKIPPED = "skipped", "skipped (no longer needed)"

    account = models.ForeignKey("kommo.KommoAccount", on_delete=models.CASCADE, related_name="+")
    entity_type = models.CharField(max_length=16, default="leads")
    entity_kommo_id = models.BigIntegerField("entity's Kommo id")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    payload = models.JSONField(default=dict)
    idempotency_key = models.CharField(max_length=200, unique=True)
    dedupe_key = models.CharField(
        max_length=200,
        blank=True,
        db_index=True,
        help_text="Changes sharing this key never leave two open tasks in Kommo (one per deal and rule).",
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    kommo_request_id = models.CharField("Kommo request id", max_length=100, blank=True)
    result_ids = models.JSONField("Kommo ids written", default=list, blank=True)
    sending_at = models.DateTimeField(null=True, blank=True, help_text="When it was last handed to Kommo.")
    sent_at = models.DateTimeField(null=True, blank=True)
    echoed_at = models.DateTimeField(
        null=True, blank=True, help_text="When Kommo's report of this move came back (lead_status only)."
    )

    class Meta:
        verbose_name = "outbound change"
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["lead_status", "task_create", "note_create"]),
                name="kommo_outbound_kind_known",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "sending", "sent", "failed", "unknown", "skipped"]),
                name="kommo_outbound_status_known",
            ),
        ]
        indexes = [
            models.Index(fields=["account", "status", "id"], name="kommo_outbound_queue"),
            models.Index(fields=["account", "kind", "entity_kommo_id"], name="kommo_outbound_entity"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.entity_type} {self.entity_kommo_id}: {self.status}"
