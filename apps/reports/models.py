"""The reports' own tables."""

from __future__ import annotations

from django.db import models

from apps.core.models import TimeStampedModel


class ExportClient(TimeStampedModel):
    """A BI tool or script allowed to read the export API with its own key (``Authorization: Bearer
    ek_<prefix>_<secret>``). Only a SHA-256 hash of the key is kept; the key is shown once, when made."""

    name = models.CharField(max_length=200, unique=True)
    key_prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    is_active = models.BooleanField("active", default=True, help_text="Clear to revoke the key.")
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "export client"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
