"""The reports' own tables: the permission holder, the BI export's clients, the stages' usual times the
stuck-deals report falls back on, and the weekly decision-maker coverage snapshots. The reports themselves
read the mirror, the stays, the stakeholders and the gate decisions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

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


# -- stuck deals and decision-maker coverage ------------------------------------------------------------


class StageNorm(models.Model):
    """The usual time of one stage when its history is too thin to measure it.

    The stuck-deals report calls a deal overdue in its stage past 1.5 times the stage's usual time: the median
    of the stage's completed stays of the last 180 days when there are at least 20, else this default
    (else ``REPORTS_STAGE_DEFAULT_DAYS``)."""

    status = models.OneToOneField(
        "kommo.Status", on_delete=models.CASCADE, related_name="norm", verbose_name="stage"
    )
    usual_days = models.DecimalField(
        "usual days in the stage",
        max_digits=6,
        decimal_places=1,
        default=Decimal("14"),
        validators=[MinValueValidator(Decimal("0.1"))],
        help_text="Used while the stage has fewer than 20 completed stays in the last 180 days.",
    )
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "stage's usual time"
        verbose_name_plural = "stages' usual times"
        ordering = ["status__pipeline", "status__sort"]
        constraints = [
            models.CheckConstraint(condition=Q(usual_days__gt=0), name="reports_stage_norm_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.status}: {self.usual_days} days"


class CoverageSnapshot(models.Model):
    """Decision-maker coverage of the open deals of one stage and one manager in one week: the history the
    coverage trend is drawn from.

    The weekly beat task replaces the current week's rows with the state it reads (so a week ends with its
    last reading) and never touches past weeks. ``reports_coverage_backfill`` fills the weeks before the
    first snapshot from the stage stays, marked ``backfilled``: the deals open at the end of each week, in
    the stage they were in then; a decision maker counts from the day their contact or catalog element was
    created in Kommo; whether they had approved then is not known (left empty)."""

    account = models.ForeignKey("kommo.KommoAccount", on_delete=models.CASCADE, related_name="+")
    week = models.DateField(help_text="The Monday the week starts on.")
    taken_at = models.DateTimeField(help_text="The moment whose state the row holds.")
    pipeline = models.ForeignKey(
        "kommo.Pipeline", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    pipeline_kommo_id = models.BigIntegerField()
    status = models.ForeignKey(
        "kommo.Status", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status_kommo_id = models.BigIntegerField()
    responsible_user_kommo_id = models.BigIntegerField(default=0, help_text="0: no responsible user.")
    deals = models.PositiveIntegerField(default=0)
    value = models.BigIntegerField(default=0)
    without_dm = models.PositiveIntegerField("deals without a decision maker", default=0)
    without_dm_value = models.BigIntegerField(default=0)
    dm_approved = models.PositiveIntegerField(
        "deals whose decision maker approved", null=True, blank=True, help_text="Empty: not known."
    )
    dm_approved_value = models.BigIntegerField(null=True, blank=True)
    backfilled = models.BooleanField(default=False)

    class Meta:
        verbose_name = "coverage snapshot"
        ordering = ["account", "week", "pipeline_kommo_id", "status_kommo_id", "responsible_user_kommo_id"]
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "account",
                    "week",
                    "pipeline_kommo_id",
                    "status_kommo_id",
                    "responsible_user_kommo_id",
                ],
                name="reports_coverage_snapshot_once_per_week",
            ),
        ]
        indexes = [models.Index(fields=["account", "week"], name="reports_coverage_week")]

    def __str__(self) -> str:
        return f"{self.week}: {self.status_kommo_id} / {self.responsible_user_kommo_id}"


# -- the forecast ---------------------------------------------------------------------------------------


class ForecastCategory(models.Model):
    """The forecast category of one stage (sales ops set it in the admin). A stage without a row takes its
    default from its place in the pipeline: the last open stage *commit*, the one before it *best case*,
    the others *pipeline*; an incoming-leads stage *omitted*."""

    class Category(models.TextChoices):
        COMMIT = "commit", "Commit"
        BEST_CASE = "best_case", "Best case"
        PIPELINE = "pipeline", "Pipeline"
        OMITTED = "omitted", "Omitted"

    status = models.OneToOneField(
        "kommo.Status", on_delete=models.CASCADE, related_name="forecast_category", verbose_name="stage"
    )
    category = models.CharField(max_length=10, choices=Category.choices)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "stage's forecast category"
        verbose_name_plural = "stages' forecast categories"
        ordering = ["status__pipeline", "status__sort"]

    def __str__(self) -> str:
        return f"{self.status}: {self.get_category_display()}"


class ImmutableQuerySet(models.QuerySet[Any]):
    def update(self, **kwargs: Any) -> int:
        raise TypeError("forecast snapshots are immutable")


class ForecastSnapshot(models.Model):
    """The forecast of one pipeline of one account as it stood at ``taken_at``, for the quarter it was taken
    in (*current*) and the next, by method: stage-weighted, committee-adjusted, and the categories' cumulative
    roll-ups. One per account, pipeline and week; written once (by beat, or by the backtest for a past week,
    ``backtested``) and never changed. Its deals are :class:`ForecastSnapshotDeal` rows."""

    account = models.ForeignKey("kommo.KommoAccount", on_delete=models.CASCADE, related_name="+")
    pipeline = models.ForeignKey(
        "kommo.Pipeline", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    pipeline_kommo_id = models.BigIntegerField()
    week = models.DateField(help_text="The Monday of the week the snapshot belongs to.")
    taken_at = models.DateTimeField(help_text="The moment whose state the snapshot holds.")
    backtested = models.BooleanField(default=False, help_text="Rebuilt from the history for a past week.")
    current_start = models.DateField(help_text="First day of the quarter the snapshot was taken in.")
    next_start = models.DateField(help_text="First day of the quarter after it.")
    current_weighted = models.BigIntegerField(default=0)
    current_committee = models.BigIntegerField(default=0)
    current_commit = models.BigIntegerField(default=0)
    current_best_case = models.BigIntegerField(default=0)
    current_pipeline = models.BigIntegerField(default=0)
    next_weighted = models.BigIntegerField(default=0)
    next_committee = models.BigIntegerField(default=0)
    next_commit = models.BigIntegerField(default=0)
    next_best_case = models.BigIntegerField(default=0)
    next_pipeline = models.BigIntegerField(default=0)
    stages = models.JSONField(
        default=list, blank=True, help_text="Each stage's p, its closed cohort and median time to won."
    )
    created = models.DateTimeField(auto_now_add=True)

    objects = ImmutableQuerySet.as_manager()

    class Meta:
        verbose_name = "forecast snapshot"
        ordering = ["account", "pipeline_kommo_id", "week"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "pipeline_kommo_id", "week"], name="reports_forecast_once_per_week"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.week}: pipeline {self.pipeline_kommo_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise TypeError("forecast snapshots are immutable")
        super().save(*args, **kwargs)


class ForecastSnapshotDeal(models.Model):
    """One open deal in a forecast snapshot: its stage, value, p (plain and committee-adjusted), coverage
    state and expected close, as they stood at the snapshot's moment. Written with its snapshot, never
    changed."""

    class Period(models.TextChoices):
        CURRENT = "current"
        NEXT = "next"
        LATER = "later"

    snapshot = models.ForeignKey(ForecastSnapshot, on_delete=models.CASCADE, related_name="deals")
    lead = models.ForeignKey("kommo.Lead", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    lead_kommo_id = models.BigIntegerField()
    status_kommo_id = models.BigIntegerField()
    stage = models.CharField(max_length=255, blank=True)
    responsible_user_kommo_id = models.BigIntegerField(default=0, help_text="0: no responsible user.")
    value = models.BigIntegerField(default=0)
    p = models.FloatField()
    p_committee = models.FloatField()
    dm_identified = models.BooleanField()
    approvals_present = models.BooleanField(null=True, blank=True, help_text="Empty: not known then.")
    expected_close = models.DateField()
    close_from_field = models.BooleanField(default=False)
    period = models.CharField(max_length=8, choices=Period.choices)
    category = models.CharField(max_length=10, choices=ForecastCategory.Category.choices)

    objects = ImmutableQuerySet.as_manager()

    class Meta:
        verbose_name = "forecast snapshot deal"
        ordering = ["snapshot", "-value", "lead_kommo_id"]
        indexes = [models.Index(fields=["snapshot", "period"], name="reports_forecast_deal_period")]

    def __str__(self) -> str:
        return f"{self.snapshot}: deal {self.lead_kommo_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise TypeError("forecast snapshots are immutable")
        super().save(*args, **kwargs)


class StuckState(models.Model):
    """What the stuck-deals selector (:mod:`apps.reports.selectors.stuck`) last said about one deal, for the
    stuck-deals page, the BI export's ``stuck`` and ``stuck_reasons`` columns and the ``bi`` views: the page
    reads it rather than evaluating every open deal per request, the export's SQL cannot run the selector.

    Written by :func:`apps.reports.export.stuck.stuck_states_refresh` (a beat task every
    ``REPORTS_EXPORT_STUCK_MINUTES``; :class:`StuckRefresh` holds when it last ran): a row for every deal the
    selector has called stuck, its reason codes ``;``-separated (empty once it is no longer stuck), the
    reasons in words, its days in stage and its stage's usual days then, and ``changed``, when the codes
    last changed, which the export's incremental loads compare. Rows are written only when something
    changed; ``changed`` moves only with the codes."""

    lead = models.OneToOneField(
        "kommo.Lead", on_delete=models.CASCADE, primary_key=True, related_name="stuck_state"
    )
    account = models.ForeignKey("kommo.KommoAccount", on_delete=models.CASCADE, related_name="+")
    reasons = models.TextField(blank=True, help_text="Reason codes, ';'-separated; empty: not stuck.")
    changed = models.DateTimeField(help_text="When the reasons last changed.")
    text = models.TextField(blank=True, help_text="The reasons in words, as the stuck-deals page shows them.")
    days_in_stage = models.FloatField(null=True, blank=True, help_text="At the last refresh.")
    usual_days = models.FloatField(null=True, blank=True, help_text="The stage's usual time then.")

    class Meta:
        verbose_name = "stuck state of a deal"

    def __str__(self) -> str:
        return f"{self.lead_id}: {self.reasons or 'not stuck'}"


class StuckRefresh(models.Model):
    """When the stuck states of one account were last refreshed (the moment the stuck-deals page's figures
    are as of; empty: never), and when a page last queued a refresh of them (``queued_at``, claimed with a
    conditional update so that many viewers of stale figures queue one refresh; cleared by the refresh)."""

    account = models.OneToOneField(
        "kommo.KommoAccount", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    refreshed_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(
        null=True, blank=True, help_text="When a page queued a refresh that has not finished yet."
    )

    class Meta:
        verbose_name = "stuck states' refresh"

    def __str__(self) -> str:
        return f"{self.account_id}: {f'{self.refreshed_at:%Y-%m-%d %H:%M}' if self.refreshed_at else 'never'}"
