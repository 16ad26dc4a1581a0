"""The BI export's tables: stable names and columns, each one a query over the local tables.

A table is a model, an ordered list of :class:`Column` (name, kind, the ORM expression that computes it,
a line of description for docs/export.md) and the fields its filters use. The same query serves the CSV
stream, the JSON pages and the ``bi`` schema's SQL views (:mod:`apps.reports.export.sql`), so the three
cannot disagree. Names and columns are a contract with BI users: add columns at the end, never rename.

Each row has ``id``, the local id: unique and never reused, the order rows come in and the JSON cursor.
``changed_at`` is when the portal last changed the row (or, for deals, one of its stakeholders): what
``updated_since`` compares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import models
from django.db.models import Case, CharField, Count, Exists, F, OuterRef, Q, Subquery, Sum, Value, When
from django.db.models.functions import Cast, Coalesce, Greatest, Now

from apps.gates.models import GateDecision
from apps.gates.semantics import CLOSED_STATUS_IDS
from apps.kommo.models import Lead, StageChange, StageStay
from apps.reports.models import ForecastSnapshotDeal
from apps.reports.sql import DaysBetween, SecondsBetween
from apps.stakeholders.models import Stakeholder


class Kind:
    INTEGER = "integer"
    TEXT = "text"
    TIMESTAMP = "timestamp"  # ISO 8601 in UTC
    MONEY = "money"  # a decimal with two places
    DAYS = "days"  # a decimal with two places, whatever the database returns
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    LIST = "list"  # ";"-separated in CSV, an array in JSON


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    expression: Any
    description: str


@dataclass(frozen=True)
class Table:
    name: str
    model: type[models.Model]
    columns: tuple[Column, ...]
    description: str
    account_field: str
    pipeline_field: str
    # Rows changed at or after a time: a Q built from the time (several fields may say so).
    changed_since: Callable[[Any], Q]
    base_filter: Q = field(default_factory=Q)

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    def queryset(self) -> models.QuerySet[Any]:
        """The table's rows as tuples in column order, ordered by ``id``. Annotations are named ``x_…``
        so that a column may share its name with a field of the model."""
        annotations = {
            f"x_{column.name}": F(column.expression)
            if isinstance(column.expression, str)
            else column.expression
            for column in self.columns
        }
        return (
            self.model._default_manager.filter(self.base_filter)
            .annotate(**annotations)
            .order_by("pk")
            .values_list(*annotations)
        )


class TagNames(models.Func):
    """The names of a deal's tags from its raw payload, ``;``-separated, in Kommo's order."""

    output_field = models.TextField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        template = (
            "(SELECT string_agg(tag #>> '{}', ';') FROM "
            "jsonb_path_query(%(expressions)s, '$._embedded.tags[*].name') AS tag)"
        )
        return self.as_sql(compiler, connection, template=template, **extra)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        template = (
            "(SELECT group_concat(json_extract(tag.value, '$.name'), ';') FROM "
            "json_each(%(expressions)s, '$._embedded.tags') AS tag)"
        )
        return self.as_sql(compiler, connection, template=template, **extra)


class JoinedTexts(models.Func):
    """A JSON array of texts as one ``;``-separated text (what the CSV holds; JSON splits it again)."""

    output_field = models.TextField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        template = (
            "(SELECT string_agg(item #>> '{}', ';') FROM jsonb_path_query(%(expressions)s, '$[*]') AS item)"
        )
        return self.as_sql(compiler, connection, template=template, **extra)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        template = "(SELECT group_concat(item.value, ';') FROM json_each(%(expressions)s) AS item)"
        return self.as_sql(compiler, connection, template=template, **extra)


def _people(**conditions: Any) -> Exists:
    return Exists(Stakeholder.objects.filter(lead=OuterRef("pk"), **conditions))


_last_stakeholder_change = Subquery(
    Stakeholder.objects.filter(lead=OuterRef("pk"))
    .order_by()
    .values("lead")
    .annotate(last=models.Max("updated"))
    .values("last")[:1],
    output_field=models.DateTimeField(),
)
_stakeholder_count = Subquery(
    Stakeholder.objects.filter(lead=OuterRef("pk"))
    .order_by()
    .values("lead")
    .annotate(n=Count("pk"))
    .values("n")[:1],
    output_field=models.IntegerField(),
)


def _days_in_stage() -> Any:
    """An open deal: its days in its current stage over every stay there, the open one up to now (the
    stuck-deals selector's time in stage); a closed deal: the days of its final stay, the one that ended
    when it was won or lost. Two decimals."""
    current = Subquery(
        StageStay.objects.filter(lead=OuterRef("pk"), status_id=OuterRef("status_id"))
        .order_by()
        .values("lead")
        .annotate(days=Sum(DaysBetween(Coalesce("left_at", Now()), "entered_at")))
        .values("days")[:1],
        output_field=models.FloatField(),
    )
    final = Subquery(
        StageStay.objects.filter(lead=OuterRef("pk"), left_at__isnull=False)
        .order_by("-left_at", "-pk")
        .annotate(days=DaysBetween("left_at", "entered_at"))
        .values("days")[:1],
        output_field=models.FloatField(),
    )
    days = Case(When(status_kommo_id__in=CLOSED_STATUS_IDS, then=final), default=current)
    return Cast(days, models.DecimalField(max_digits=12, decimal_places=2))


# The stuck-deals selector's answer as last written to StuckState (apps.reports.export.stuck): only for a
# deal still open and not deleted, whatever the last refresh found.
_is_stuck = Q(is_deleted=False, stuck_state__reasons__gt="") & ~Q(status_kommo_id__in=CLOSED_STATUS_IDS)

DEALS = Table(
    name="deals",
    model=Lead,
    description="One row per deal (Kommo lead) in the mirror, deleted ones included (is_deleted).",
    account_field="account_id",
    pipeline_field="pipeline_kommo_id",
    changed_since=lambda since: (
        Q(modified__gte=since) | Q(_people(updated__gte=since)) | Q(stuck_state__changed__gte=since)
    ),
    columns=(
        Column("id", Kind.INTEGER, "pk", "the portal's id of the deal (unique, never reused)"),
        Column("kommo_id", Kind.INTEGER, "kommo_id", "Kommo's lead id"),
        Column("account", Kind.INTEGER, "account_id", "the portal's id of the Kommo account"),
        Column("name", Kind.TEXT, "name", "the deal's name"),
        Column("pipeline", Kind.INTEGER, "pipeline_kommo_id", "Kommo's pipeline id"),
        Column("pipeline_name", Kind.TEXT, "pipeline__name", "the pipeline's name"),
        Column(
            "stage",
            Kind.INTEGER,
            "status_kommo_id",
            "Kommo's status id of the current stage (142 won, 143 lost)",
        ),
        Column("stage_name", Kind.TEXT, "status__name", "the stage's name"),
        Column(
            "stage_sort", Kind.INTEGER, "status__sort", "the stage's position in its pipeline (Kommo's sort)"
        ),
        Column(
            "responsible",
            Kind.INTEGER,
            "responsible_user_kommo_id",
            "Kommo's user id of the responsible manager",
        ),
        Column("responsible_name", Kind.TEXT, "responsible_user__name", "the responsible manager's name"),
        Column("price", Kind.MONEY, "price", "the deal's value in the account's currency"),
        Column("created_at", Kind.TIMESTAMP, "created_at", "created in Kommo"),
        Column("updated_at", Kind.TIMESTAMP, "updated_at", "last changed in Kommo"),
        Column("closed_at", Kind.TIMESTAMP, "closed_at", "closed in Kommo (won or lost); empty while open"),
        Column(
            "outcome",
            Kind.TEXT,
            Case(
                When(status_kommo_id=142, then=Value("won")),
                When(status_kommo_id=143, then=Value("lost")),
                default=Value("open"),
                output_field=models.TextField(),
            ),
            "open, won or lost",
        ),
        Column("loss_reason", Kind.INTEGER, "loss_reason_kommo_id", "Kommo's loss reason id of a lost deal"),
        Column("tags", Kind.LIST, TagNames("raw"), "the deal's Kommo tags"),
        Column(
            "has_decision_maker",
            Kind.BOOLEAN,
            _people(role__is_decision_maker=True),
            "a stakeholder has a decision-maker role",
        ),
        Column(
            "decision_maker_approved",
            Kind.BOOLEAN,
            _people(role__is_decision_maker=True, approval_status="approved"),
            "a stakeholder with a decision-maker role approved",
        ),
        Column(
            "stakeholders",
            Kind.INTEGER,
            Coalesce(_stakeholder_count, 0),
            "how many stakeholders the deal has",
        ),
        Column("is_deleted", Kind.BOOLEAN, "is_deleted", "deleted in Kommo"),
        Column(
            "changed_at",
            Kind.TIMESTAMP,
            Greatest(
                "modified",
                Coalesce(_last_stakeholder_change, "modified"),
                Coalesce("stuck_state__changed", "modified"),
            ),
            "when the portal last changed the deal, one of its stakeholders or its stuck reasons"
            " (what updated_since compares)",
        ),
        Column(
            "days_in_stage",
            Kind.DAYS,
            _days_in_stage(),
            "open: days in the current stage, every stay there counted (the stuck-deals report's);"
            " closed: days of the final stay, the one that ended in won or lost",
        ),
        Column(
            "stuck",
            Kind.BOOLEAN,
            Case(When(_is_stuck, then=Value(True)), default=Value(False), output_field=models.BooleanField()),
            "the stuck-deals report calls the open deal stuck (false for a closed or deleted deal)",
        ),
        Column(
            "stuck_reasons",
            Kind.LIST,
            Case(
                When(_is_stuck, then=F("stuck_state__reasons")), default=None, output_field=models.TextField()
            ),
            "why it is stuck, as codes (stage_overdue, stale_touch, no_open_task, gate_missing,"
            " objection_open)",
        ),
    ),
)

STAKEHOLDERS = Table(
    name="stakeholders",
    model=Stakeholder,
    description="One row per stakeholder: a person taking part in one deal's purchase.",
    account_field="account_id",
    pipeline_field="lead__pipeline_kommo_id",
    changed_since=lambda since: Q(updated__gte=since),
    columns=(
        Column("id", Kind.INTEGER, "pk", "the portal's id of the stakeholder (unique, never reused)"),
        Column("account", Kind.INTEGER, "account_id", "the portal's id of the Kommo account"),
        Column("deal", Kind.INTEGER, "lead__kommo_id", "Kommo's lead id of the deal"),
        Column(
            "contact", Kind.INTEGER, "contact__kommo_id", "Kommo's contact id, when the person is a contact"
        ),
        Column(
            "catalog_element",
            Kind.INTEGER,
            "catalog_element__kommo_id",
            "Kommo's catalog element id, when the person is in the Stakeholders catalog",
        ),
        Column("name", Kind.TEXT, "name", "the person's name"),
        Column("role", Kind.TEXT, "role__code", "the role's code (decision_maker, lawyer, …)"),
        Column("role_label", Kind.TEXT, "role__label", "the role's label"),
        Column(
            "is_decision_maker",
            Kind.BOOLEAN,
            Coalesce("role__is_decision_maker", False),
            "the role signs off the purchase",
        ),
        Column("approval", Kind.TEXT, "approval_status", "pending, approved, rejected or unknown"),
        Column("last_touch", Kind.TIMESTAMP, "last_touch", "the last contact with the person"),
        Column(
            "objection_weight", Kind.DECIMAL, "objection_weight", "the weight of the person's open objection"
        ),
        Column(
            "source", Kind.TEXT, "source", "where the portal read the person: contact_field, catalog or both"
        ),
        Column(
            "changed_at",
            Kind.TIMESTAMP,
            "updated",
            "when the portal last changed the row (what updated_since compares)",
        ),
    ),
)

STAGE_CHANGES = Table(
    name="stage_changes",
    model=StageChange,
    description="One row per move of a deal between stages, whoever reported it.",
    account_field="account_id",
    pipeline_field="lead__pipeline_kommo_id",
    changed_since=lambda since: Q(created__gte=since),
    columns=(
        Column("id", Kind.INTEGER, "pk", "the portal's id of the move (unique, never reused)"),
        Column("account", Kind.INTEGER, "account_id", "the portal's id of the Kommo account"),
        Column("deal", Kind.INTEGER, "lead__kommo_id", "Kommo's lead id of the deal"),
        Column(
            "from_pipeline", Kind.INTEGER, "from_pipeline_kommo_id", "Kommo's pipeline id before the move"
        ),
        Column("from_stage", Kind.INTEGER, "from_status_kommo_id", "Kommo's status id before the move"),
        Column("from_stage_name", Kind.TEXT, "from_status__name", "its name"),
        Column("to_pipeline", Kind.INTEGER, "to_pipeline_kommo_id", "Kommo's pipeline id after the move"),
        Column("to_stage", Kind.INTEGER, "to_status_kommo_id", "Kommo's status id after the move"),
        Column("to_stage_name", Kind.TEXT, "to_status__name", "its name"),
        Column("at", Kind.TIMESTAMP, "at", "when the deal moved"),
        Column("at_is_exact", Kind.BOOLEAN, "at_is_exact", "false: only known to be no later than at"),
        Column("source", Kind.TEXT, "source", "who reported it first: webhook, sync, events or gate"),
        Column(
            "moved_by", Kind.INTEGER, "moved_by_kommo_user_id", "Kommo's user id of who moved it, when known"
        ),
        Column(
            "changed_at",
            Kind.TIMESTAMP,
            "created",
            "when the portal recorded the move (what updated_since compares)",
        ),
    ),
)

GATE_DECISIONS = Table(
    name="gate_decisions",
    model=GateDecision,
    description="One row per gate decision; decisions never change.",
    account_field="account_id",
    pipeline_field="lead__pipeline_kommo_id",
    changed_since=lambda since: Q(decided_at__gte=since),
    columns=(
        Column("id", Kind.INTEGER, "pk", "the portal's id of the decision (unique, never reused)"),
        Column("account", Kind.INTEGER, "account_id", "the portal's id of the Kommo account"),
        Column("deal", Kind.INTEGER, "lead__kommo_id", "Kommo's lead id of the deal"),
        Column("rule", Kind.INTEGER, "rule_id", "the portal's id of the gate rule"),
        Column("rule_name", Kind.TEXT, "rule__name", "the rule's name"),
        Column("rule_version", Kind.INTEGER, "rule_version", "the version of the rule applied"),
        Column("mode", Kind.TEXT, "mode", "enforce or dry_run"),
        Column("outcome", Kind.TEXT, "outcome", "allowed, blocked, would_block, exempt, stale or error"),
        Column("from_stage", Kind.INTEGER, "from_status_kommo_id", "Kommo's status id the deal left"),
        Column("to_stage", Kind.INTEGER, "to_status_kommo_id", "Kommo's status id the deal went to"),
        Column("transition", Kind.TEXT, "transition", "from and to stage, by name"),
        Column("reasons", Kind.LIST, JoinedTexts("reasons"), "why, in words"),
        Column(
            "decided_at",
            Kind.TIMESTAMP,
            "decided_at",
            "when the portal decided (what updated_since compares)",
        ),
        Column(
            "latency_ms",
            Kind.INTEGER,
            "latency_ms",
            "from the report of the move reaching the portal to the decision",
        ),
    ),
)


def _stays_changed_since(since: Any) -> Q:
    """The stays of every deal whose stays may have changed: the deal changed, or a move of it was
    recorded (a stay that changes is replaced by a new row, so a load replaces each such deal's stays)."""
    moved = StageChange.objects.filter(lead=OuterRef("lead"), created__gte=since)
    return Q(lead__modified__gte=since) | Q(Exists(moved))


STAGE_STAYS = Table(
    name="stage_stays",
    model=StageStay,
    description="One row per stay of a deal in a stage; a deal that re-enters a stage has several.",
    account_field="account_id",
    pipeline_field="pipeline_kommo_id",
    changed_since=_stays_changed_since,
    columns=(
        Column("id", Kind.INTEGER, "pk", "the portal's id of the stay (a stay that changes gets a new row)"),
        Column("account", Kind.INTEGER, "account_id", "the portal's id of the Kommo account"),
        Column("deal", Kind.INTEGER, "lead__kommo_id", "Kommo's lead id of the deal"),
        Column("pipeline", Kind.INTEGER, "pipeline_kommo_id", "Kommo's pipeline id"),
        Column("stage", Kind.INTEGER, "status_kommo_id", "Kommo's status id of the stage"),
        Column("stage_name", Kind.TEXT, "status__name", "the stage's name"),
        Column("entered_at", Kind.TIMESTAMP, "entered_at", "when the deal entered the stage"),
        Column("left_at", Kind.TIMESTAMP, "left_at", "when it left; empty while it is still there"),
        Column(
            "seconds",
            Kind.INTEGER,
            SecondsBetween("left_at", "entered_at", whole=True),
            "whole seconds in the stage; empty while open",
        ),
        Column(
            "next_stage", Kind.INTEGER, "next_status_kommo_id", "Kommo's status id of the stage it went to"
        ),
        Column("next_stage_name", Kind.TEXT, "next_status__name", "its name"),
        Column(
            "left_how",
            Kind.TEXT,
            "left_how",
            "forward, back, won, lost or pipeline (to another pipeline); empty while open",
        ),
    ),
)

FORECAST_SNAPSHOTS = Table(
    name="forecast_snapshots",
    model=ForecastSnapshotDeal,
    description="One row per open deal in each weekly forecast snapshot; snapshots never change.",
    account_field="snapshot__account_id",
    pipeline_field="snapshot__pipeline_kommo_id",
    changed_since=lambda since: Q(snapshot__created__gte=since),
    columns=(
        Column("id", Kind.INTEGER, "pk", "the portal's id of the row (unique, never reused)"),
        Column("snapshot", Kind.INTEGER, "snapshot_id", "the portal's id of the snapshot"),
        Column("account", Kind.INTEGER, "snapshot__account_id", "the portal's id of the Kommo account"),
        Column("pipeline", Kind.INTEGER, "snapshot__pipeline_kommo_id", "Kommo's pipeline id"),
        Column("week", Kind.TEXT, Cast("snapshot__week", CharField()), "the Monday of the snapshot's week"),
        Column("taken_at", Kind.TIMESTAMP, "snapshot__taken_at", "the moment whose state the snapshot holds"),
        Column(
            "backtested",
            Kind.BOOLEAN,
            "snapshot__backtested",
            "rebuilt from the history by reports_forecast_backtest for a past week",
        ),
        Column(
            "quarter_start",
            Kind.TEXT,
            Cast("snapshot__current_start", CharField()),
            "first day of the quarter the snapshot was taken in",
        ),
        Column("deal", Kind.INTEGER, "lead_kommo_id", "Kommo's lead id of the deal"),
        Column("stage", Kind.INTEGER, "status_kommo_id", "Kommo's status id of the deal's stage then"),
        Column("stage_name", Kind.TEXT, "stage", "the stage's name"),
        Column(
            "responsible_user",
            Kind.INTEGER,
            "responsible_user_kommo_id",
            "Kommo's user id of the responsible manager (0: none)",
        ),
        Column("value", Kind.MONEY, "value", "the deal's budget"),
        Column("p", Kind.DECIMAL, "p", "the stage's probability of won"),
        Column("p_committee", Kind.DECIMAL, "p_committee", "p adjusted by the deal's coverage state"),
        Column("dm_identified", Kind.BOOLEAN, "dm_identified", "a decision maker was identified"),
        Column(
            "approvals_present",
            Kind.BOOLEAN,
            "approvals_present",
            "every approval the gates ahead require was given; empty: not known then",
        ),
        Column("expected_close", Kind.TEXT, Cast("expected_close", CharField()), "the expected close date"),
        Column(
            "close_from_field",
            Kind.BOOLEAN,
            "close_from_field",
            "the expected close came from the account's close-date field",
        ),
        Column("period", Kind.TEXT, "period", "current, next or later quarter, by the expected close"),
        Column("category", Kind.TEXT, "category", "commit, best_case, pipeline or omitted"),
    ),
)

TABLES: dict[str, Table] = {
    table.name: table
    for table in (DEALS, STAKEHOLDERS, STAGE_STAYS, STAGE_CHANGES, GATE_DECISIONS, FORECAST_SNAPSHOTS)
}
