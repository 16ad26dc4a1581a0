"""Gate rules, the stage changes waiting to be checked against them, and the decision log.

A :class:`GateRule` guards one stage of one pipeline: a deal may not move past it until every
:class:`GateCondition` holds for its stakeholders. Every new stage change gets a :class:`GateEvaluation`
row (the queue the worker drains in batches) and every outcome a :class:`GateDecision` row, which is
never changed afterwards.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

from apps.core.models import TimeStampedModel
from apps.gates import semantics

DEFAULT_TASK_TEMPLATE = (
    "{deal} was moved back from {to_stage} to {stage}: {missing}. Resolve it before moving the deal on."
)


class GateRule(TimeStampedModel):
    """One stage of one pipeline that a deal may only move past when the conditions hold."""

    class Mode(models.TextChoices):
        ENFORCE = "enforce", "Enforce (move back, task, note)"
        DRY_RUN = "dry_run", "Dry run (record what it would block)"

    account = models.ForeignKey("kommo.KommoAccount", on_delete=models.CASCADE, related_name="gate_rules")
    name = models.CharField(max_length=200)
    pipeline = models.ForeignKey("kommo.Pipeline", on_delete=models.PROTECT, related_name="+")
    gated_stage = models.ForeignKey(
        "kommo.Status",
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Deals may not move past this stage until the conditions hold.",
    )
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.DRY_RUN)
    is_active = models.BooleanField("active", default=True)
    exempt_users = models.ManyToManyField(
        "kommo.KommoUser",
        blank=True,
        related_name="+",
        help_text="Moves by these Kommo users pass (recorded as exempt), e.g. the head of sales.",
    )
    override_tag = models.CharField(
        max_length=100, blank=True, help_text="A deal carrying this Kommo tag passes (recorded as exempt)."
    )
    task_template = models.TextField(
        default=DEFAULT_TASK_TEMPLATE,
        help_text="Placeholders: {deal}, {missing}, {stage} (where the deal goes back to), {from_stage}, "
        "{to_stage}, {rule}.",
    )
    task_due_hours = models.PositiveIntegerField("task due in (hours)", default=24)
    move_back_stage = models.ForeignKey(
        "kommo.Status",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty: the stage the deal came from (the gated stage for a deal from elsewhere).",
    )
    version = models.PositiveIntegerField(default=1, editable=False)

    class Meta:
        ordering = ["account", "pipeline", "gated_stage__sort", "id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "name"], name="gates_rule_name_unique_per_account"),
            models.CheckConstraint(
                condition=Q(mode__in=["enforce", "dry_run"]), name="gates_rule_mode_known"
            ),
            models.CheckConstraint(
                condition=Q(task_due_hours__gte=1) & Q(task_due_hours__lte=24 * 90),
                name="gates_rule_due_hours_range",
            ),
            models.CheckConstraint(condition=Q(version__gte=1), name="gates_rule_version_positive"),
        ]
        indexes = [models.Index(fields=["account", "is_active"], name="gates_rule_active")]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Every change of a saved rule is a new version; decisions record the version they applied."""
        if self.pk is not None and not self._state.adding:
            self.version = F("version") + 1
            super().save(*args, **kwargs)
            self.refresh_from_db(fields=["version"])
            return
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        stage = self.gated_stage if self.gated_stage_id is not None else None
        pipeline = self.pipeline if self.pipeline_id is not None else None
        if self.account_id is not None and pipeline is not None and pipeline.account_id != self.account_id:
            errors["pipeline"] = "This pipeline belongs to another account."
        if stage is not None:
            if pipeline is not None and stage.pipeline_id != pipeline.pk:
                errors["gated_stage"] = f"This stage is not in the pipeline {pipeline}."
            elif stage.kommo_id in semantics.CLOSED_STATUS_IDS:
                errors["gated_stage"] = "Won (142) and lost (143) are final: nothing moves past them."
        back = self.move_back_stage if self.move_back_stage_id is not None else None
        if back is not None and stage is not None and "gated_stage" not in errors:
            if back.pipeline_id != stage.pipeline_id:
                errors["move_back_stage"] = "The stage to move back to must be in the same pipeline."
            elif back.kommo_id in semantics.CLOSED_STATUS_IDS:
                errors["move_back_stage"] = "A deal cannot be moved back to won or lost."
            elif back.type == back.Type.INCOMING:
                errors["move_back_stage"] = "A deal cannot be moved back into the incoming-leads stage."
            elif back.sort > stage.sort:
                errors["move_back_stage"] = "The stage to move back to must be the gated stage or before it."
        try:
            unknown = semantics.template_placeholders(self.task_template) - semantics.TEMPLATE_PLACEHOLDERS
        except ValueError:
            errors["task_template"] = "Unbalanced braces: write {{ and }} for literal braces."
        else:
            if unknown:
                known = ", ".join("{" + name + "}" for name in sorted(semantics.TEMPLATE_PLACEHOLDERS))
                errors["task_template"] = f"Unknown placeholders {sorted(unknown)}; known: {known}."
        if errors:
            raise ValidationError(errors)


class GateCondition(models.Model):
    """What the deal's stakeholders must satisfy for a move past the rule's stage."""

    class Requirement(models.TextChoices):
        PRESENT = semantics.PRESENT, "present at least n times"
        APPROVED = semantics.APPROVED, "approved (at least n)"
        APPROVED_CURRENT = semantics.APPROVED_CURRENT, "approved and not expired (at least n)"
        APPROVED_WITHIN = semantics.APPROVED_WITHIN, "approved within the last N days (at least n)"
        NOT_BLOCKING = semantics.NOT_BLOCKING, "none blocking (nobody with the role rejected)"
        NO_OBJECTION = semantics.NO_OBJECTION, "no open objection weighing at least W"
        TOUCHED_WITHIN = semantics.TOUCHED_WITHIN, "touched within the last N days (at least n)"

    rule = models.ForeignKey(GateRule, on_delete=models.CASCADE, related_name="conditions")
    role = models.ForeignKey("stakeholders.Role", on_delete=models.PROTECT, related_name="+")
    requirement = models.CharField(max_length=16, choices=Requirement.choices)
    n = models.PositiveSmallIntegerField(
        default=1, help_text="How many (present / approved / touched); ignored otherwise."
    )
    days = models.PositiveSmallIntegerField(
        "N days",
        null=True,
        blank=True,
        help_text="Approved within / touched within: how many days back from the decision.",
    )
    min_weight = models.DecimalField(
        "W (weight)",
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="No open objection: the least weight that blocks (empty: any open objection).",
    )

    class Meta:
        ordering = ["rule", "id"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "role", "requirement"], name="gates_condition_unique"),
            models.CheckConstraint(
                condition=Q(
                    requirement__in=[
                        "present",
                        "approved",
                        "approved_current",
                        "approved_within",
                        "not_blocking",
                        "no_objection",
                        "touched_within",
                    ]
                ),
                name="gates_condition_requirement_known",
            ),
            models.CheckConstraint(condition=Q(n__gte=1), name="gates_condition_n_positive"),
            models.CheckConstraint(
                condition=~Q(requirement__in=["approved_within", "touched_within"])
                | Q(days__isnull=False, days__gte=1),
                name="gates_condition_days_when_needed",
            ),
        ]

    def __str__(self) -> str:
        counted = self.requirement not in (self.Requirement.NOT_BLOCKING, self.Requirement.NO_OBJECTION)
        count = f" (at least {self.n})" if self.n > 1 and counted else ""
        text = self.get_requirement_display()
        if self.requirement in semantics.NEEDS_DAYS and self.days:
            text = text.replace("N days", f"{self.days} days")
        if self.requirement == self.Requirement.NO_OBJECTION:
            weight = "any weight" if self.min_weight is None else f"weight ≥ {self.min_weight.normalize()}"
            text = f"no open objection ({weight})"
        return f"{self.role}: {text.removesuffix(' (at least n)')}{count}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.n is None or self.n < 1:
            errors["n"] = "At least 1."
        if self.requirement in semantics.NEEDS_DAYS and (self.days is None or self.days < 1):
            errors["days"] = "Say how many days back (at least 1)."
        if self.min_weight is not None and self.min_weight < 0:
            errors["min_weight"] = "A weight is 0 or more."
        if errors:
            raise ValidationError(errors)

    def as_semantics(self) -> semantics.Condition:
        return semantics.Condition(
            role_id=self.role_id,
            role_label=self.role.label,
            requirement=self.requirement,
            n=self.n,
            days=self.days,
            min_weight=self.min_weight,
        )


class GateEvaluation(models.Model):
    """A stage change waiting for the gates: written in the transaction that recorded the change, claimed
    in batches by the worker (one fresh read of Kommo for the whole batch), done once decided."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"

    account = models.ForeignKey("kommo.KommoAccount", on_delete=models.CASCADE, related_name="+")
    stage_change = models.OneToOneField(
        "kommo.StageChange", on_delete=models.CASCADE, related_name="gate_evaluation"
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    received_at = models.DateTimeField(
        null=True, blank=True, help_text="When the report of the move reached the portal, when known."
    )
    fresh_after = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The mirror's copy of the deal counts as Kommo's fresh state when it was fetched at or "
        "after this time (set for moves recorded by webhook processing, which re-fetches the deals after "
        "their webhooks arrived). Empty: the deal is re-read from Kommo.",
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["account", "status", "id"], name="gates_evaluation_queue")]

    def __str__(self) -> str:
        return f"stage change {self.stage_change_id}: {self.status}"


class GateDecisionQuerySet(models.QuerySet["GateDecision"]):
    def update(self, **kwargs: Any) -> int:
        raise TypeError("gate decisions are immutable")


class GateDecision(models.Model):
    """What a rule decided about one move of one deal, and why. Written once, never changed."""

    class Outcome(models.TextChoices):
        ALLOWED = "allowed"
        BLOCKED = "blocked"
        WOULD_BLOCK = "would_block", "would block (dry run)"
        EXEMPT = "exempt"
        STALE = "stale", "stale (skipped)"
        ERROR = "error"

    account = models.ForeignKey("kommo.KommoAccount", on_delete=models.CASCADE, related_name="+")
    rule = models.ForeignKey(GateRule, on_delete=models.PROTECT, related_name="decisions")
    rule_version = models.PositiveIntegerField()
    mode = models.CharField(max_length=10, choices=GateRule.Mode.choices)
    lead = models.ForeignKey("kommo.Lead", on_delete=models.CASCADE, related_name="gate_decisions")
    stage_change = models.ForeignKey(
        "kommo.StageChange", on_delete=models.SET_NULL, null=True, blank=True, related_name="gate_decisions"
    )
    from_status_kommo_id = models.BigIntegerField(null=True, blank=True)
    to_status_kommo_id = models.BigIntegerField()
    transition = models.CharField(max_length=300, help_text="From and to stage, by name.")
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    reasons = models.JSONField(default=list, blank=True, help_text="Why, in words (failed conditions, …).")
    stakeholders = models.JSONField(default=list, blank=True, help_text="The stakeholders when decided.")
    fresh_state = models.JSONField(default=dict, blank=True, help_text="What Kommo said when re-read.")
    actions = models.JSONField(default=list, blank=True, help_text="What the portal did about it.")
    received_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(auto_now_add=True, db_index=True)
    latency_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="From the report of the move reaching the portal to this decision."
    )

    objects = GateDecisionQuerySet.as_manager()

    class Meta:
        ordering = ["-decided_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "stage_change"],
                condition=Q(stage_change__isnull=False),
                name="gates_decision_once_per_rule_and_move",
            )
        ]
        indexes = [
            models.Index(fields=["account", "outcome", "decided_at"], name="gates_decision_outcome"),
            models.Index(fields=["lead", "decided_at"], name="gates_decision_lead"),
        ]

    def __str__(self) -> str:
        # By what it is (the page title and breadcrumb of a decision), not by the rule's row id.
        return f"{self.get_outcome_display()}: {self.transition} (rule version {self.rule_version})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise TypeError("gate decisions are immutable")
        super().save(*args, **kwargs)
