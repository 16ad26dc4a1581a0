"""The reports' own tables: the permission holder, and the BI export's clients. The reports themselves
read the mirror, the stays, the stakeholders and the gate decisions."""

from django.db import models

from apps.core.models import TimeStampedModel


class ReportAccess(models.Model):
    """Holds the permission ``reports.view_reports`` (given to the groups Head of sales and Sales ops by a
    data migration): who has it sees every deal in the reports; a manager sees their own deals only."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("view_reports", "Can see the reports on every deal")]

    def __str__(self) -> str:
        return "reports"


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
