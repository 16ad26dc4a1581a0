"""Stage time limits and the escalations they cause.

A :class:`StageLimit` says how long a deal may stay in one stage: past its first limit the deal's
responsible manager gets one Kommo task, past its second the account's :class:`HeadOfSales` gets one.
Every task given is an :class:`Escalation` row, written once and never changed.

A stay is named by what it is — the deal, the stage and the moment the deal entered it — not by the
:class:`~apps.kommo.models.StageStay` row's pk: the stays are derived again from the stage history as
moves are recorded (a stay that closes is a new row), so a pk would not survive. The unique constraint on
(deal, stage, entered, level) is what makes "one task per deal, stay and level" hold under concurrent
checks; a deal that leaves and re-enters the stage has a new stay and may be escalated again.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from apps.core.models import TimeStampedModel

CLOSED_STATUS_IDS = (142, 143)


class StageLimit(TimeStampedModel):
    """How long a deal may stay in one stage before someone is told."""

    status = models.OneToOneField(
        "kommo.Status", on_delete=models.CASCADE, related_name="time_limit", verbose_name="stage"
    )
    usual_days = models.DecimalField(
        "usual days",
        max_digits=6,
        decimal_places=1,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.1"))],
        help_text="Shown beside the limits, in the tasks and on the deal. Empty: the stage's measured usual "
        "time (the median of its completed stays of the last 180 days when there are 20, else its stage "
        "norm, else REPORTS_STAGE_DEFAULT_DAYS).",
    )
    limit_days = models.DecimalField(
        "first limit (days)",
        max_digits=6,
        decimal_places=1,
        validators=[MinValueValidator(Decimal("0.1"))],
        help_text="Past this many days in one stay in the stage, the deal's responsible manager gets a task.",
    )
    second_limit_days = models.DecimalField(
        "second limit (days)",
        max_digits=6,
        decimal_places=1,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.1"))],
        help_text="Past this many days, the head of sales gets a task too. Empty: nobody beyond the manager.",
    )
    task_due_hours = models.PositiveIntegerField("task due in (hours)", default=24)
    is_active = models.BooleanField("active", default=True)

    class Meta:
        verbose_name = "stage time limit"
        ordering = ["status__pipeline__sort", "status__sort", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(limit_days__gt=0), name="escalations_limit_positive"),
            models.CheckConstraint(
                condition=Q(second_limit_days__isnull=True) | Q(second_limit_days__gt=models.F("limit_days")),
                name="escalations_second_limit_after_first",
            ),
            models.CheckConstraint(
                condition=Q(usual_days__isnull=True) | Q(usual_days__gt=0), name="escalations_usual_positive"
            ),
            models.CheckConstraint(
                condition=Q(task_due_hours__gte=1) & Q(task_due_hours__lte=24 * 90),
                name="escalations_due_hours_range",
            ),
        ]

    def __str__(self) -> str:
        second = f", then {self.second_limit_days}" if self.second_limit_days is not None else ""
        return f"{self.status}: {self.limit_days} days{second}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        status = self.status if self.status_id is not None else None
        if status is not None and status.kommo_id in CLOSED_STATUS_IDS:
            errors["status"] = "Won (142) and lost (143) are final: a deal does not wait there."
        if (
            self.limit_days is not None
            and self.second_limit_days is not None
            and self.second_limit_days <= self.limit_days
        ):
            errors["second_limit_days"] = "The second limit must be later than the first."
        if errors:
            raise ValidationError(errors)


class HeadOfSales(models.Model):
    """The Kommo user who gets the second-level escalations of one account."""

    account = models.OneToOneField(
        "kommo.KommoAccount", on_delete=models.CASCADE, related_name="head_of_sales"
    )
    kommo_user = models.ForeignKey(
        "kommo.KommoUser",
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name="Kommo user",
        help_text="Gets a task for every deal past its stage's second limit.",
    )
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "head of sales"
        verbose_name_plural = "heads of sales"
        ordering = ["account"]

    def __str__(self) -> str:
        return f"{self.account}: {self.kommo_user}"

    def clean(self) -> None:
        if (
            self.account_id is not None
            and self.kommo_user_id is not None
            and self.kommo_user.account_id != self.account_id
        ):
            raise ValidationError({"kommo_user": "This Kommo user belongs to another account."})


class EscalationQuerySet(models.QuerySet["Escalation"]):
    def update(self, **kwargs: Any) -> int:
        raise TypeError("escalations are immutable")


class Escalation(models.Model):
    """One task given because a deal stayed too long in a stage. Written once, never changed."""

    class Level(models.IntegerChoices):
        MANAGER = 1, "first limit: the responsible manager"
        HEAD_OF_SALES = 2, "second limit: the head of sales"

    account = models.ForeignKey("kommo.KommoAccount", on_delete=models.CASCADE, related_name="+")
    lead = models.ForeignKey(
        "kommo.Lead", on_delete=models.CASCADE, related_name="escalations", verbose_name="deal"
    )
    status = models.ForeignKey(
        "kommo.Status",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name="stage",
    )
    status_kommo_id = models.BigIntegerField("stage's Kommo id")
    stay_entered_at = models.DateTimeField("in the stage since")
    level = models.PositiveSmallIntegerField(choices=Level.choices)
    limit_days = models.DecimalField("limit passed (days)", max_digits=6, decimal_places=1)
    usual_days = models.DecimalField(max_digits=7, decimal_places=1, null=True, blank=True)
    days_in_stage = models.DecimalField(max_digits=7, decimal_places=1)
    missing = models.JSONField(default=list, blank=True, help_text="What the deal lacked, in words.")
    recipient = models.ForeignKey(
        "kommo.KommoUser", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    recipient_kommo_id = models.BigIntegerField("recipient's Kommo id", null=True, blank=True)
    task_text = models.TextField()
    task_due_at = models.DateTimeField(null=True, blank=True)
    outbound_change = models.ForeignKey(
        "kommo.OutboundChange", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    escalated_at = models.DateTimeField(db_index=True)

    objects = EscalationQuerySet.as_manager()

    class Meta:
        verbose_name = "escalation"
        ordering = ["-escalated_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["lead", "status_kommo_id", "stay_entered_at", "level"],
                name="escalations_once_per_stay_and_level",
            ),
            models.CheckConstraint(condition=Q(level__in=[1, 2]), name="escalations_level_known"),
        ]
        indexes = [models.Index(fields=["account", "escalated_at"], name="escalations_account_time")]

    def __str__(self) -> str:
        since = f"{self.stay_entered_at:%Y-%m-%d}"
        return f"{self.lead_id}: level {self.level} in {self.status_kommo_id} since {since}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise TypeError("escalations are immutable")
        super().save(*args, **kwargs)
