"""The reports keep no table of their own yet: they read the mirror, the stays, the stakeholders and the
gate decisions. ``ReportAccess`` exists for its permission only."""

from django.db import models


class ReportAccess(models.Model):
    """Holds the permission ``reports.view_reports`` (given to the groups Head of sales and Sales ops by a
    data migration): who has it sees every deal in the reports; a manager sees their own deals only."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("view_reports", "Can see the reports on every deal")]

    def __str__(self) -> str:
        return "reports"
