"""A synthetic Kommo account for the reports benchmark: many deals with a believable past, written fast.

``synthetic_account_seed`` fills one new account in the local tables (never Kommo): the demo's B2B pipeline
and a smaller renewals pipeline, managers, deals that walk the stages with durations that differ by stage
(legal review the slowest, a few stalled far past the usual time), lost at various stages, moved back by
the gates and by their managers, each move a :class:`~apps.kommo.models.StageChange`; the stays those moves
give; contacts with a role in the purchase, approvals and objections as stakeholders; and the gate decisions
of every move across a gated stage. Everything is drawn from one seeded random generator, so a size and a
seed give the same account every time.

The rows are generated deal by deal, in chunks, and written with PostgreSQL's ``COPY`` (``INSERT`` batches
elsewhere) with ids reserved up front, so a 100,000-deal account with a million stage changes takes a
minute or two, not the hours the model layer would. Nothing runs the services' side effects (no signal, no
gate evaluation, no outbound change): the account is history, not live traffic.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from apps.gates.models import GateCondition, GateDecision, GateRule
from apps.kommo.models import (
    Contact,
    KommoAccount,
    KommoUser,
    Lead,
    LeadContact,
    Pipeline,
    StageChange,
    StageStay,
    Status,
)
from apps.kommo.services.stays import earlier_in_stage
from apps.stakeholders.models import Role, Stakeholder

DAY = 86400.0
WON, LOST = 142, 143
CHUNK = 2000  # deals generated and written at a time
TRIAL = 800  # deals walked per step of the calibration

# (name, median days in the stage, chance of being lost when leaving it)
B2B = (
    ("Incoming leads", 1.5, 0.08),
    ("DM qualification", 8.0, 0.18),
    ("Technical validation", 12.0, 0.14),
    ("Budget approval", 9.0, 0.10),
    ("Legal review", 21.0, 0.07),
    ("Signing", 5.0, 0.04),
)
RENEWALS = (
    ("Incoming leads", 1.0, 0.03),
    ("Renewal due", 10.0, 0.08),
    ("Negotiation", 14.0, 0.10),
    ("Contract sent", 6.0, 0.04),
)
# The stages of the B2B pipeline a deal may not leave until its gate passes: (stage index, role code).
GATED = {1: ("An identified decision maker to leave DM qualification", "decision_maker", "present"),
         4: ("The lawyer approved to leave Legal review", "lawyer", "approved")}  # fmt: skip
LOSS_REASONS = (9101, 9102, 9103)  # Budget cut, Chose a competitor, No decision (as in the sandbox)
ROLE_MIX = (  # roles after the first stakeholder, by weight
    ("technical_evangelist", 5),
    ("user", 6),
    ("lawyer", 3),
    ("influencer", 3),
    ("blocker", 1),
)
FIRST = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jia", "Kofi", "Lena",
         "Marco", "Nora", "Omar", "Pia", "Quinn", "Rosa", "Sam", "Tara", "Uma", "Wen")  # fmt: skip
LAST = ("Adler", "Brooks", "Costa", "Dahl", "Evans", "Fischer", "Garcia", "Hughes", "Ito", "Jensen", "Khan",
        "Larsen", "Moreau", "Nakamura", "Okafor", "Petrov", "Quist", "Rossi", "Silva", "Tanaka")  # fmt: skip
PRODUCTS = (
    "Analytics suite",
    "Data platform",
    "Security bundle",
    "Support plan",
    "Cloud seats",
    "Integration",
)
TAGS = ("enterprise", "partner", "inbound", "upsell", "priority")


@dataclass
class SeedResult:
    account: KommoAccount
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class _Stage:
    pk: int
    kommo_id: int
    pipeline_pk: int
    pipeline_kommo_id: int
    index: int  # position among the working stages, -1 for won and lost
    median_days: float = 0.0
    lost_share: float = 0.0


@dataclass
class _Pipeline:
    pk: int
    kommo_id: int
    stages: list[_Stage]  # working stages, in order
    won: _Stage
    lost: _Stage
    gated: bool


class _Writer:
    """Writes rows with explicit ids: ``COPY`` on PostgreSQL, ``INSERT`` batches elsewhere."""

    def __init__(self) -> None:
        self.postgres = connection.vendor == "postgresql"
        self.next_ids: dict[type[models.Model], int] = {}
        self.counts: dict[str, int] = {}
        self.deferred: list[str] = []

    def lock(self, *tables: type[models.Model], check_references: bool) -> None:
        """Takes the tables' write lock and the next free id of each. Without ``check_references`` (and
        as a superuser), the foreign keys are not checked row by row at commit: the generator makes them
        right, and the checks would take longer than the writes."""
        if self.postgres:
            with connection.cursor() as cursor:
                if not check_references:
                    cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                    if cursor.fetchone()[0]:
                        cursor.execute("SET LOCAL session_replication_role = replica")
                names = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in tables)
                cursor.execute(f"LOCK TABLE {names} IN SHARE ROW EXCLUSIVE MODE")
        for model in tables:
            last = model._default_manager.aggregate(last=models.Max("pk"))["last"] or 0
            self.next_ids[model] = last + 1

    def ids(self, model: type[models.Model], count: int) -> int:
        first = self.next_ids[model]
        self.next_ids[model] = first + count
        return first

    def write(self, model: type[models.Model], names: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """Writes ``rows`` (values in the order of the field names ``names``); a field left out gets its
        default, so that a field added to a model later does not break the seeding."""
        if not rows:
            return
        fields = [model._meta.get_field(name) for name in names]
        given = {f.column for f in fields}  # type: ignore[union-attr]
        extra = [f for f in model._meta.concrete_fields if f.column not in given]
        extra_values = tuple(
            f.get_db_prep_save(
                timezone.now()
                if getattr(f, "auto_now_add", False) or getattr(f, "auto_now", False)
                else f.get_default(),
                connection,
            )
            for f in extra
        )
        columns = [f.column for f in fields] + [f.column for f in extra]  # type: ignore[union-attr]
        table = model._meta.db_table
        self.counts[table] = self.counts.get(table, 0) + len(rows)
        quote = connection.ops.quote_name
        names_sql = ", ".join(quote(str(c)) for c in columns)
        if self.postgres:
            with (
                connection.cursor() as cursor,
                cursor.cursor.copy(f"COPY {quote(table)} ({names_sql}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row + extra_values)
            return
        placeholders = ", ".join(["%s"] * len(columns))
        sql = f"INSERT INTO {quote(table)} ({names_sql}) VALUES ({placeholders})"  # noqa: S608 - model names
        prepared = [
            tuple(
                value if isinstance(value, str) else f.get_db_prep_save(value, connection)  # type: ignore[union-attr]
                for f, value in zip(fields, row, strict=True)
            )
            + extra_values
            for row in rows
        ]
        with connection.cursor() as cursor:
            cursor.executemany(sql, prepared)

    def indexes_defer(self, *tables: type[models.Model]) -> None:
        """On PostgreSQL, drops the indexes of those of ``tables`` that are empty (a new database: the
        benchmark's), to build them once after the writes (:meth:`finish`) rather than row by row — most of
        the time of a large seed otherwise. The indexes that back a constraint (primary keys, unique
        constraints) stay; they are checked as the rows come."""
        if not self.postgres:
            return
        quote = connection.ops.quote_name
        with connection.cursor() as cursor:
            for model in tables:
                table = model._meta.db_table
                cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {quote(table)})")  # noqa: S608 - model name
                if cursor.fetchone()[0]:
                    continue
                cursor.execute(
                    "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i"
                    " WHERE i.indrelid = %s::regclass AND NOT EXISTS"
                    " (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
                    [quote(table)],
                )
                for name, definition in cursor.fetchall():
                    cursor.execute(f"DROP INDEX {name}")
                    self.deferred.append(definition)

    def finish(self) -> None:
        """Builds the indexes :meth:`indexes_defer` dropped, and moves each sequence past the ids used, so
        that later rows get new ones."""
        if not self.postgres:
            return
        with connection.cursor() as cursor:
            if self.deferred:
                # An index cannot be built on a table with foreign key checks pending (with
                # check_references): run them now, as the commit would, and defer the later ones again.
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
                for definition in self.deferred:
                    cursor.execute(definition)
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
            for model, following in self.next_ids.items():
                table = model._meta.db_table
                cursor.execute(
                    "SELECT setval(pg_get_serial_sequence(%s, 'id'), GREATEST(%s, 1), %s)",
                    [connection.ops.quote_name(table), following - 1, following > 1],
                )


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


SOURCES = {source: _dump([source]) for source in ("webhook", "events", "gate")}


class _Generator:
    def __init__(
        self,
        *,
        account: KommoAccount,
        deals: int,
        stage_changes: int,
        stakeholders: int,
        seed: int,
        now: dt.datetime,
        years: float = 2,
    ) -> None:
        self.account = account
        self.deals, self.target_changes, self.target_stakeholders = deals, stage_changes, stakeholders
        self.seed = seed
        self.random = random.Random(seed)  # noqa: S311 - reproducible data
        self.now = now
        self.now_ts = now.timestamp()
        self.horizon = years * 365 * DAY  # deals created over the last ``years`` (two by default)
        self.names: dict[int, str] = {}

    # -- the account's fixed parts (the ORM: a few dozen rows) --------------------------------------------

    def basics(self) -> None:
        account = self.account
        managers = max(4, min(60, self.deals // 2500))
        self.users = [
            KommoUser.objects.create(
                account=account, kommo_id=8000 + n, name=name, email=f"user{n}@synthetic.example"
            )
            for n, name in enumerate(
                ["Account admin", "Head of sales"] + [f"Manager {n + 1:02d}" for n in range(managers)]
            )
        ]
        self.managers = self.users[2:]
        self.pipelines = [
            self._pipeline(7000001, "B2B sales", B2B, sort=1, main=True),
            self._pipeline(7000002, "Renewals", RENEWALS, sort=2, main=False),
        ]
        b2b = self.pipelines[0]
        roles = {role.code: role for role in Role.objects.all()}
        self.roles = roles
        self.rules: dict[int, GateRule] = {}
        for index, (name, code, requirement) in GATED.items():
            rule = GateRule.objects.create(
                account=account,
                name=name,
                pipeline_id=b2b.pk,
                gated_stage_id=b2b.stages[index].pk,
                mode=GateRule.Mode.ENFORCE,
            )
            if code in roles:
                GateCondition.objects.create(rule=rule, role=roles[code], requirement=requirement, n=1)
            self.rules[index] = rule
        self.role_codes = [code for code, _ in ROLE_MIX if code in roles]
        self.role_weights = [weight for code, weight in ROLE_MIX if code in roles]

    def _pipeline(
        self, kommo_id: int, name: str, stages: Sequence[tuple[str, float, float]], *, sort: int, main: bool
    ) -> _Pipeline:
        pipeline = Pipeline.objects.create(
            account=self.account, kommo_id=kommo_id, name=name, sort=sort, is_main=main
        )
        working = []
        base = 60000 + 100 * (kommo_id - 7000000)
        for index, (stage_name, median, lost) in enumerate(stages):
            status = Status.objects.create(
                account=self.account,
                pipeline=pipeline,
                kommo_id=base + index,
                name=stage_name,
                sort=10 * (index + 1),
                type=Status.Type.INCOMING if index == 0 else Status.Type.REGULAR,
            )
            self.names[status.pk] = stage_name
            working.append(_Stage(status.pk, status.kommo_id, pipeline.pk, kommo_id, index, median, lost))
        closed = []
        for kommo, label, sort in ((WON, "Closed - won", 10000), (LOST, "Closed - lost", 11000)):
            status = Status.objects.create(
                account=self.account,
                pipeline=pipeline,
                kommo_id=kommo,
                name=label,
                sort=sort,
                is_won=kommo == WON,
                is_lost=kommo == LOST,
                is_editable=False,
            )
            self.names[status.pk] = label
            closed.append(_Stage(status.pk, kommo, pipeline.pk, kommo_id, -1))
        return _Pipeline(pipeline.pk, kommo_id, working, closed[0], closed[1], gated=main)

    # -- one deal's walk through the stages ---------------------------------------------------------------

    def walk(
        self, rng: random.Random, pipeline: _Pipeline, created: float, bounce: float
    ) -> list[tuple[_Stage, float, str]]:
        """The stages the deal was in, each with the time it entered and how it got there (``webhook``,
        ``events`` or ``gate``); the first is where it was created."""
        index = 0 if rng.random() < 0.6 else 1
        path = [(pipeline.stages[index], created, "")]
        t = created
        stalled = rng.random() < 0.04
        while True:
            stage = pipeline.stages[index]
            days = stage.median_days * math.exp(rng.gauss(0.0, 0.6))
            if stalled and rng.random() < 0.3:
                days *= rng.uniform(4.0, 8.0)
            t += days * DAY
            if t >= self.now_ts:
                return path
            source = "webhook" if rng.random() < 0.8 else "events"
            # Moved on too early: back again (by the gate when the stage is gated, else by the manager).
            while rng.random() < bounce and index + 1 < len(pipeline.stages):
                ahead = pipeline.stages[index + 1]
                path.append((ahead, t, source))
                gated = pipeline.gated and index in GATED
                back_after = rng.uniform(20, 90) if gated else rng.uniform(0.2, 3.0) * DAY
                t += back_after
                path.append((stage, t, "gate" if gated else source))
                t += stage.median_days * rng.uniform(0.1, 0.6) * DAY
                if t >= self.now_ts:
                    return path
            if rng.random() < stage.lost_share:
                path.append((pipeline.lost, t, source))
                return path
            index += 2 if rng.random() < 0.03 and index + 2 < len(pipeline.stages) else 1
            if index >= len(pipeline.stages):
                path.append((pipeline.won, t, source))
                return path
            path.append((pipeline.stages[index], t, source))

    def calibrate(self) -> float:
        """The bounce chance that gives the wanted stage changes per deal (a quick trial of the walk)."""
        wanted = self.target_changes / max(1, self.deals)
        low, high = 0.0, 0.95
        for _ in range(12):
            middle = (low + high) / 2
            trial = random.Random(7)  # noqa: S311 - reproducible data
            moves = 0
            for _ in range(TRIAL):
                pipeline = self.pipelines[0] if trial.random() < 0.8 else self.pipelines[1]
                created = self.now_ts - trial.uniform(0, self.horizon)
                moves += len(self.walk(trial, pipeline, created, middle)) - 1
            if moves / TRIAL < wanted:
                low = middle
            else:
                high = middle
        return (low + high) / 2

    # -- the deals, in chunks -----------------------------------------------------------------------------

    def run(self, writer: _Writer) -> None:
        bounce = self.calibrate()
        stakeholders_per_deal = self.target_stakeholders / max(1, self.deals)
        if writer.postgres:
            from apps.reports import synthetic_sql

            synthetic_sql.run(self, writer, bounce, stakeholders_per_deal)
            return
        for start in range(0, self.deals, CHUNK):
            self.chunk(writer, range(start, min(self.deals, start + CHUNK)), bounce, stakeholders_per_deal)

    def _at(self, ts: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(ts, tz=dt.UTC)

    def chunk(self, writer: _Writer, numbers: range, bounce: float, per_deal: float) -> None:
        rng, account_id = self.random, self.account.pk
        leads: list[tuple[Any, ...]] = []
        changes: list[tuple[Any, ...]] = []
        contacts: list[tuple[Any, ...]] = []
        links: list[tuple[Any, ...]] = []
        people: list[tuple[Any, ...]] = []
        decisions: list[tuple[Any, ...]] = []
        self.walks: list[tuple[int, list[tuple[_Stage, float, str]], float]] = []
        first_lead = writer.ids(Lead, len(numbers))
        for offset, number in enumerate(numbers):
            lead_pk = first_lead + offset
            pipeline = self.pipelines[0] if rng.random() < 0.8 else self.pipelines[1]
            # Deal n is created in the n-th of as many slices of the history as there are deals: the deals
            # are numbered as they were created, as Kommo numbers them and the mirror stores them (its
            # sync reads them in Kommo's id order).
            created = self.now_ts - self.horizon * (1 - (number + rng.random()) / self.deals)
            path = self.walk(rng, pipeline, created, bounce)
            self.walks.append((lead_pk, path, created))
            manager = rng.choice(self.managers)
            final, last_move = path[-1][0], path[-1][1]
            closed = final.index < 0
            updated = min(self.now_ts, last_move + rng.uniform(0, 2 * DAY))
            price = int(round(rng.lognormvariate(math.log(30000 if pipeline.gated else 12000), 0.7), -2))
            tags = [{"id": 500 + t, "name": TAGS[t]} for t in range(len(TAGS)) if rng.random() < 0.12]
            leads.append(
                (
                    lead_pk,
                    account_id,
                    10_000_001 + number,
                    f"Deal {number + 1} — {PRODUCTS[number % len(PRODUCTS)]}",
                    price,
                    pipeline.pk,
                    pipeline.kommo_id,
                    final.pk,
                    final.kommo_id,
                    manager.pk,
                    manager.kommo_id,
                    rng.choice(LOSS_REASONS) if final.kommo_id == LOST else None,
                    self._at(created),
                    self._at(updated),
                    self._at(last_move) if closed else None,
                    _dump({"_embedded": {"tags": tags}} if tags else {}),
                    False,
                    self._at(created),
                    self._at(updated),
                )
            )
            for step in range(1, len(path)):
                (before, _, _), (after, at, source) = path[step - 1], path[step]
                change_pk = writer.ids(StageChange, 1)
                moment = self._at(at)
                changes.append(
                    (
                        change_pk,
                        account_id,
                        lead_pk,
                        before.kommo_id,
                        pipeline.kommo_id,
                        after.kommo_id,
                        pipeline.kommo_id,
                        before.pk,
                        after.pk,
                        moment,
                        True,
                        source,
                        SOURCES[source],
                        None if source == "gate" else manager.pk,
                        None if source == "gate" else manager.kommo_id,
                        moment + dt.timedelta(seconds=rng.uniform(0.2, 30)),
                    )
                )
                crosses = after.index > before.index or after.kommo_id == WON
                if pipeline.gated and before.index in GATED and crosses:
                    blocked = step + 1 < len(path) and path[step + 1][2] == "gate"
                    decisions.append(
                        self.decision(writer, lead_pk, change_pk, before, after, moment, blocked)
                    )
            self.stakeholders(writer, contacts, links, people, lead_pk, path, manager, created, per_deal)
        writer.write(Lead, LEAD_FIELDS, leads)
        writer.write(StageChange, CHANGE_FIELDS, changes)
        writer.write(Contact, CONTACT_FIELDS, contacts)
        writer.write(LeadContact, LINK_FIELDS, links)
        writer.write(Stakeholder, STAKEHOLDER_FIELDS, people)
        writer.write(GateDecision, DECISION_FIELDS, decisions)
        stays_write(writer, account_id, self.walks)

    def decision(
        self,
        writer: _Writer,
        lead_pk: int,
        change_pk: int,
        before: _Stage,
        after: _Stage,
        moment: dt.datetime,
        blocked: bool,
    ) -> tuple[Any, ...]:
        rule = self.rules[before.index]
        _, code, _ = GATED[before.index]
        latency = self.random.randint(150, 900)
        missing = "decision maker" if code == "decision_maker" else "the lawyer's approval"
        return (
            writer.ids(GateDecision, 1),
            self.account.pk,
            rule.pk,
            1,
            GateRule.Mode.ENFORCE,
            lead_pk,
            change_pk,
            before.kommo_id,
            after.kommo_id,
            f"{self.names[before.pk]} → {self.names[after.pk]}",
            GateDecision.Outcome.BLOCKED if blocked else GateDecision.Outcome.ALLOWED,
            _dump([f"missing: {missing}"] if blocked else []),
            "[]",
            "{}",
            _dump(["moved back", "task", "note"] if blocked else []),
            moment,
            moment + dt.timedelta(milliseconds=latency),
            latency,
        )

    def stakeholders(
        self,
        writer: _Writer,
        contacts: list[tuple[Any, ...]],
        links: list[tuple[Any, ...]],
        people: list[tuple[Any, ...]],
        lead_pk: int,
        path: list[tuple[_Stage, float, str]],
        manager: KommoUser,
        created: float,
        per_deal: float,
    ) -> None:
        """Two to seven people (``per_deal`` on average): most deals have a decision maker, deals that got
        to legal review a lawyer; approvals follow how far the deal went; some objections, some silence."""
        rng = self.random
        final = path[-1][0]
        won, lost = final.kommo_id == WON, final.kommo_id == LOST
        reached = max(stage.index for stage, _, _ in path)
        end = path[-1][1] if final.index < 0 else self.now_ts
        count = max(1, min(9, round(rng.gauss(per_deal, 1.2))))
        roles: list[str] = []
        if rng.random() < (0.97 if won else 0.8) and "decision_maker" in self.roles:
            roles.append("decision_maker")
        if (won or reached >= 4) and rng.random() < 0.9 and "lawyer" in self.roles:
            roles.append("lawyer")
        while len(roles) < count and self.role_codes:
            roles.append(rng.choices(self.role_codes, self.role_weights)[0])
        first_contact = writer.ids(Contact, len(roles))
        first_person = writer.ids(Stakeholder, len(roles))
        first_link = writer.ids(LeadContact, len(roles))
        for n, code in enumerate(roles):
            contact_pk = first_contact + n
            kommo_id = 20_000_001 + contact_pk
            first, last = rng.choice(FIRST), rng.choice(LAST)
            name = f"{first} {last}"
            if won:
                approval = "approved"
            elif lost:
                approval = rng.choice(("rejected", "pending", "approved", "unknown"))
            else:
                approval = rng.choices(("pending", "approved", "rejected", "unknown"), (5, 3, 1, 1))[0]
            touch = end - (rng.uniform(0, 40) if rng.random() < 0.25 else rng.uniform(0, 10)) * DAY
            touch = max(created, touch)
            objection = round(rng.uniform(0.1, 1.0), 2) if rng.random() < 0.12 else None
            contacts.append(
                (
                    contact_pk,
                    self.account.pk,
                    kommo_id,
                    name,
                    first,
                    last,
                    manager.pk,
                    manager.kommo_id,
                    "[]",
                    "[]",
                    self._at(created),
                    self._at(touch),
                    "{}",
                    False,
                    self._at(created),
                    self._at(touch),
                )
            )
            links.append((first_link + n, lead_pk, contact_pk, kommo_id, n == 0))
            people.append(
                (
                    first_person + n,
                    self.account.pk,
                    lead_pk,
                    contact_pk,
                    self.roles[code].pk,
                    approval,
                    self._at(touch),
                    objection,
                    name,
                    Stakeholder.Source.CONTACT_FIELD,
                    self._at(touch),
                )
            )


LEAD_FIELDS = (
    "id", "account_id", "kommo_id", "name", "price", "pipeline_id", "pipeline_kommo_id", "status_id",
    "status_kommo_id", "responsible_user_id", "responsible_user_kommo_id", "loss_reason_kommo_id",
    "created_at", "updated_at", "closed_at", "raw", "is_deleted", "created", "modified",
)  # fmt: skip
CHANGE_FIELDS = (
    "id", "account_id", "lead_id", "from_status_kommo_id", "from_pipeline_kommo_id", "to_status_kommo_id",
    "to_pipeline_kommo_id", "from_status_id", "to_status_id", "at", "at_is_exact", "source", "sources",
    "moved_by_id", "moved_by_kommo_user_id", "created",
)  # fmt: skip
CONTACT_FIELDS = (
    "id", "account_id", "kommo_id", "name", "first_name", "last_name", "responsible_user_id",
    "responsible_user_kommo_id", "emails", "phones", "created_at", "updated_at", "raw", "is_deleted",
    "created", "modified",
)  # fmt: skip
LINK_FIELDS = ("id", "lead_id", "contact_id", "contact_kommo_id", "is_main")
STAKEHOLDER_FIELDS = (
    "id", "account_id", "lead_id", "contact_id", "role_id", "approval_status", "last_touch",
    "objection_weight", "name", "source", "updated",
)  # fmt: skip
DECISION_FIELDS = (
    "id", "account_id", "rule_id", "rule_version", "mode", "lead_id", "stage_change_id",
    "from_status_kommo_id", "to_status_kommo_id", "transition", "outcome", "reasons", "stakeholders",
    "fresh_state", "actions", "received_at", "decided_at", "latency_ms",
)  # fmt: skip


STAY_FIELDS = (
    "id", "account_id", "lead_id", "pipeline_id", "pipeline_kommo_id", "status_id", "status_kommo_id",
    "entered_at", "left_at", "next_status_id", "next_status_kommo_id", "next_pipeline_kommo_id", "left_how",
    "earlier_seconds",
)  # fmt: skip


def stays_write(
    writer: _Writer, account_id: int, walks: list[tuple[int, list[tuple[_Stage, float, str]], float]]
) -> None:
    """The stays the walks give, as :mod:`apps.kommo.services.stays` derives them from the same moves: the
    first from the deal's creation, each closed by the next move (how it left: won, lost, back when the
    next stage sorts before it, else forward), the last one open."""
    rows: list[tuple[Any, ...]] = []
    for lead_pk, path, _ in walks:
        first = writer.ids(StageStay, len(path))
        moments = [dt.datetime.fromtimestamp(entered, tz=dt.UTC) for _, entered, _ in path]
        earlier = earlier_in_stage(
            (stage.pk, moments[n], moments[n + 1] if n + 1 < len(path) else None)
            for n, (stage, _, _) in enumerate(path)
        )
        for n, (stage, entered, _) in enumerate(path):
            if n + 1 < len(path):
                following, left = path[n + 1][0], path[n + 1][1]
                if following.kommo_id == WON:
                    how = "won"
                elif following.kommo_id == LOST:
                    how = "lost"
                else:
                    how = "back" if following.index < stage.index else "forward"
                closed: tuple[Any, ...] = (
                    dt.datetime.fromtimestamp(left, tz=dt.UTC),
                    following.pk,
                    following.kommo_id,
                    following.pipeline_kommo_id,
                    how,
                )
            else:
                closed = (None, None, None, None, "")
            rows.append(
                (
                    first + n,
                    account_id,
                    lead_pk,
                    stage.pipeline_pk,
                    stage.pipeline_kommo_id,
                    stage.pk,
                    stage.kommo_id,
                    dt.datetime.fromtimestamp(entered, tz=dt.UTC),
                    *closed,
                    earlier[n],
                )
            )
    writer.write(StageStay, STAY_FIELDS, rows)


def synthetic_account_seed(
    *,
    deals: int,
    stage_changes: int,
    stakeholders: int,
    seed: int = 1,
    name: str | None = None,
    now: dt.datetime | None = None,
    check_references: bool = False,
    years: float = 2,
) -> SeedResult:
    """Creates a new account named ``name`` with ``deals`` deals created over the last ``years``, about
    ``stage_changes`` moves and about ``stakeholders`` stakeholders, all in one transaction. Returns the
    account and the rows written. ``check_references`` keeps PostgreSQL's foreign key checks on (the tests
    do)."""
    started = timezone.now()
    moment = now or started
    with transaction.atomic():
        account = KommoAccount.objects.create(
            name=name or f"Synthetic ({deals} deals)",
            base_url="https://synthetic.example.com",
            subdomain="synthetic",
            auth_kind=KommoAccount.AuthKind.LONG_LIVED,
        )
        generator = _Generator(
            account=account,
            deals=deals,
            stage_changes=stage_changes,
            stakeholders=stakeholders,
            seed=seed,
            now=moment,
            years=years,
        )
        generator.basics()
        writer = _Writer()
        tables = (Lead, StageChange, Contact, LeadContact, Stakeholder, GateDecision, StageStay)
        writer.lock(*tables, check_references=check_references)
        writer.indexes_defer(*tables)
        generator.run(writer)
        writer.finish()
    return SeedResult(
        account=account, counts=writer.counts, seconds=(timezone.now() - started).total_seconds()
    )
