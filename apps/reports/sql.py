"""Portable SQL pieces the report selectors aggregate with: durations in days or seconds, and percentiles.

PostgreSQL computes percentiles with ``percentile_cont``; SQLite (the zero-setup ``make run``) gets the same
aggregate, written in Python, registered on each new connection."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection, transaction
from django.db.models import Aggregate, BigIntegerField, F, FloatField, Func, Value


@contextmanager
def report_queries() -> Iterator[None]:
    """Runs a report's queries in one transaction with PostgreSQL's JIT compilation and parallel workers
    off.

    At 100,000 deals the plans of the period's aggregates cost more than ``jit_above_cost``, and
    PostgreSQL then spent longer compiling them (inlining and optimising, seconds) than running them
    (tens of milliseconds): JIT pays for long analytical scans, not for queries of this size. Off for
    these queries only, not for the rest of the portal: set for the transaction, and set back on the way
    out for a caller already inside one (an error rolls the setting back with the rest).

    Parallel workers likewise: a page's aggregates read thousands of rows (a quarter's stays), and
    starting the workers and gathering their rows took longer than the scan they shared — at 100,000 deals
    the time-in-stage and outcomes aggregates spent 100-200 ms of their 140-310 ms waiting on the Gather
    (EXPLAIN ANALYZE, a loaded machine), their workers' own part 16-60 ms."""
    postgres = connection.vendor == "postgresql"
    with transaction.atomic():
        if postgres:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT current_setting('jit'), set_config('jit', 'off', true),"
                    " current_setting('max_parallel_workers_per_gather'),"
                    " set_config('max_parallel_workers_per_gather', '0', true)"
                )
                jit, _, parallel, _ = cursor.fetchone()
        yield
        if postgres:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('jit', %s, true),"
                    " set_config('max_parallel_workers_per_gather', %s, true)",
                    [jit, parallel],
                )


class DaysBetween(Func):
    """The time from start to end in days, as a float."""

    output_field = FloatField()

    def __init__(self, end: Any, start: Any, **extra: Any) -> None:
        super().__init__(_expr(end), _expr(start), **extra)

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            compiler,
            connection,
            template="(EXTRACT(EPOCH FROM (%(expressions)s)) / 86400.0)",
            arg_joiner=" - ",
            **extra,
        )

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            compiler,
            connection,
            template="(julianday(%(expressions)s))",
            arg_joiner=") - julianday(",
            **extra,
        )


class SecondsBetween(Func):
    """The time from start to end in seconds: exactly, as a float, or in whole seconds (``whole=True``:
    rounded down, as an integer)."""

    def __init__(self, end: Any, start: Any, *, whole: bool = False, **extra: Any) -> None:
        self.whole = whole
        field = BigIntegerField() if whole else FloatField()
        super().__init__(_expr(end), _expr(start), output_field=field, **extra)

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        template = (
            "FLOOR(EXTRACT(EPOCH FROM (%(expressions)s)))::bigint"
            if self.whole
            else "EXTRACT(EPOCH FROM (%(expressions)s))::double precision"
        )
        return self.as_sql(compiler, connection, template=template, arg_joiner=" - ", **extra)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        template = (
            "CAST((julianday(%(expressions)s)) * 86400 AS INTEGER)"
            if self.whole
            else "((julianday(%(expressions)s)) * 86400.0)"
        )
        return self.as_sql(compiler, connection, template=template, arg_joiner=") - julianday(", **extra)


def _expr(value: Any) -> Any:
    """A field name as ``F``, an expression as is, anything else as a value."""
    if isinstance(value, str):
        return F(value)
    if hasattr(value, "resolve_expression"):
        return value
    return Value(value)


class Percentile(Aggregate):
    """The continuous percentile (0 ≤ fraction ≤ 1) of a numeric expression, as PostgreSQL's
    ``percentile_cont``: linear interpolation between the two nearest values."""

    function = "percentile_cont"
    output_field = FloatField()
    allow_distinct = False

    def __init__(self, expression: Any, fraction: float, **extra: Any) -> None:
        if not 0 <= fraction <= 1:
            raise ValueError("fraction must be between 0 and 1")
        self.fraction = fraction
        super().__init__(_expr(expression), **extra)

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        template = f"percentile_cont({float(self.fraction)}) WITHIN GROUP (ORDER BY %(expressions)s)"
        return self._with_template(template).as_sql(compiler, connection, **extra)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        template = f"portal_percentile(%(expressions)s, {float(self.fraction)})"
        return self._with_template(template).as_sql(compiler, connection, **extra)

    def _with_template(self, template: str) -> Percentile:
        # Set on a copy rather than passed to as_sql: Aggregate.as_sql passes its own ``template`` when the
        # aggregate has a filter (FILTER (WHERE …)), and a second one would clash.
        clone = self.copy()
        clone.template = template
        return clone


class _PercentileAggregate:
    """SQLite aggregate ``portal_percentile(value, fraction)``."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.fraction = 0.5

    def step(self, value: float | None, fraction: float) -> None:
        self.fraction = fraction
        if value is not None:
            self.values.append(float(value))

    def finalize(self) -> float | None:
        return percentile(self.values, self.fraction)


def percentile(values: list[float], fraction: float) -> float | None:
    """``percentile_cont`` in Python (the tests' known answers use it too)."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def sqlite_functions_install(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor == "sqlite":
        connection.connection.create_aggregate("portal_percentile", 2, _PercentileAggregate)
