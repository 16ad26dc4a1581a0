"""Webhook deliveries from Kommo, kept as received before they are acknowledged."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class WebhookEvent(models.Model):
    """One HTTP delivery from Kommo: the body exactly as received, and what processing made of it.

    ``received`` → ``processing`` → ``processed`` / ``ignored`` (nothing the portal mirrors) / ``failed``
    (``retry_at`` set: a transient Kommo error, tried again then; unset: permanent, kept for inspection and
    reprocessing) / ``dead`` (out of attempts). ``rejected``: the body names another account than the
    token's; it is never processed.
    """

    class Status(models.TextChoices):
        RECEIVED = "received"
        PROCESSING = "processing"
        PROCESSED = "processed"
        IGNORED = "ignored"
        FAILED = "failed"
        DEAD = "dead"
        REJECTED = "rejected"

    class Kind(models.TextChoices):
        GENERAL = "general", "account webhook"
        DIGITAL_PIPELINE = "digital_pipeline", "Digital Pipeline"

    # No index of its own: the (account, status, received_at) index below serves every query by account.
    account = models.ForeignKey(
        "kommo.KommoAccount", on_delete=models.CASCADE, related_name="webhook_events", db_index=False
    )
    body = models.BinaryField("raw body")
    content_type = models.CharField(max_length=200, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(
        "Kommo request id", max_length=100, blank=True, help_text="The X-Amocrm-Requestid header."
    )
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.GENERAL)
    events = models.CharField(
        max_length=255, blank=True, help_text='The body\'s sections, e.g. "contacts[add] leads[status]".'
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Renewed every few seconds by the worker holding the claim: a claim whose heartbeat stopped expired.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    retry_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "webhook event"
        ordering = ["-received_at", "-id"]
        # Every index is paid for by every delivery's INSERT inside Kommo's 2-second window: only these two.
        indexes = [
            # the sweeper and the claim: rows waiting or stuck, oldest first
            models.Index(fields=["status", "received_at"], name="kommo_webhook_status_received"),
            # the admin and processing: one account's events by status, newest first
            models.Index(fields=["account", "status", "-received_at"], name="kommo_webhook_account_status"),
        ]

    def __str__(self) -> str:
        return f"{self.events or 'webhook'} #{self.pk} ({self.status})"
