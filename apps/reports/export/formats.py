"""How the export writes values: CSV cells and JSON values of each column kind, the CSV stream and the JSON
page. Timestamps are ISO 8601 in UTC to the second (``2026-03-01T09:30:00Z``), money a decimal with two
places, booleans ``true``/``false``, lists ``;``-separated in CSV; an empty CSV cell is a missing value."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any

from apps.core.heartbeat import alive
from apps.reports.export.tables import Kind, Table

CSV_ROWS_PER_CHUNK = 2000


def _timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return value.split(";")
    return [str(item) for item in value]


def _two_places(value: Any) -> str:
    return f"{Decimal(value):.2f}"


_CSV: dict[str, Callable[[Any], Any]] = {
    Kind.INTEGER: lambda value: value,
    Kind.TEXT: lambda value: value,
    Kind.TIMESTAMP: _timestamp,
    Kind.MONEY: _two_places,
    Kind.DAYS: _two_places,
    Kind.DECIMAL: str,
    Kind.BOOLEAN: lambda value: "true" if value else "false",
    Kind.LIST: lambda value: ";".join(_list(value)),
}
_JSON: dict[str, Callable[[Any], Any]] = {
    **_CSV,
    Kind.BOOLEAN: bool,
    Kind.LIST: _list,
}


def csv_cells(table: Table) -> Callable[[Sequence[Any]], list[Any]]:
    """A function from a row of the table's query to its CSV cells (None stays empty)."""
    formats = [_CSV[column.kind] for column in table.columns]

    def cells(row: Sequence[Any]) -> list[Any]:
        return [None if value is None else fmt(value) for fmt, value in zip(formats, row, strict=True)]

    return cells


def json_row(table: Table) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """A function from a row of the table's query to its JSON object (a missing list is empty)."""
    names = table.column_names
    formats = [_JSON[column.kind] for column in table.columns]
    lists = [column.kind == Kind.LIST for column in table.columns]

    def row_dict(row: Sequence[Any]) -> dict[str, Any]:
        return {
            name: (None if value is None and not is_list else fmt(value))
            for name, fmt, is_list, value in zip(names, formats, lists, row, strict=True)
        }

    return row_dict


_NEEDS_QUOTES = frozenset(',"\n\r')


def _csv_field(value: Any) -> str:
    """One CSV field as PostgreSQL's ``COPY … CSV`` writes it: quoted when it holds a comma, a quote or a
    line break, empty for a missing value or an empty text."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if not _NEEDS_QUOTES.isdisjoint(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_line(cells: Sequence[Any]) -> str:
    return ",".join(_csv_field(cell) for cell in cells) + "\n"


def csv_stream(table: Table, rows: Iterator[Sequence[Any]]) -> Iterator[bytes]:
    """The header, then the rows, ``CSV_ROWS_PER_CHUNK`` at a time: memory stays the same whatever the
    number of rows (``rows`` must be a server-side iterator). Any database. Each chunk tells gunicorn the
    worker is alive (apps/core/heartbeat.py): a long stream is not cut at its timeout."""
    yield csv_line(table.column_names).encode()
    cells = csv_cells(table)
    lines: list[str] = []
    for row in rows:
        lines.append(csv_line(cells(row)))
        if len(lines) == CSV_ROWS_PER_CHUNK:
            alive()
            yield "".join(lines).encode()
            lines.clear()
    if lines:
        yield "".join(lines).encode()


# PostgreSQL: the same CSV written by the database itself (``COPY (SELECT …) TO STDOUT``), each column
# formatted in SQL exactly as csv_cells formats it in Python (a test holds the two equal).
_SQL: dict[str, str] = {
    Kind.INTEGER: "{}",
    Kind.TEXT: "NULLIF({}, '')",
    Kind.TIMESTAMP: """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')""",
    Kind.MONEY: "({})::numeric(20, 2)",
    Kind.DAYS: "({})::numeric(20, 2)",
    Kind.DECIMAL: "{}",
    Kind.BOOLEAN: "CASE WHEN {0} THEN 'true' WHEN NOT {0} THEN 'false' END",
    Kind.LIST: "NULLIF({}, '')",
}
COPY_CHUNK_BYTES = 64 * 1024


def copy_sql(table: Table, rows: Any) -> str:
    """``COPY (…) TO STDOUT`` of the query ``rows`` (the table's queryset, filtered), header first."""
    from django.db import connection

    sql, params = rows.order_by().query.sql_with_params()
    inner = connection.ops.compose_sql(sql, params)  # type: ignore[attr-defined]  # PostgreSQL's
    quote = connection.ops.quote_name
    columns = ", ".join(
        _SQL[column.kind].format(f"export.{quote('x_' + column.name)}") + f" AS {quote(column.name)}"
        for column in table.columns
    )
    select = f"SELECT {columns} FROM ({inner}) AS export ORDER BY export.{quote('x_id')}"  # noqa: S608
    return f"COPY ({select}) TO STDOUT WITH (FORMAT csv, HEADER)"


def csv_copy_stream(table: Table, rows: Any) -> Iterator[bytes]:
    """The CSV of ``rows`` as PostgreSQL writes it, passed on in chunks of about 64 KiB as it comes: one
    statement (one snapshot), memory the same whatever the number of rows. Each chunk tells gunicorn the
    worker is alive (apps/core/heartbeat.py): a long stream is not cut at its timeout."""
    from django.db import connection

    statement = copy_sql(table, rows)
    pending: list[bytes] = []
    size = 0
    try:
        with connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
            for data in copy:
                pending.append(bytes(data))
                size += len(data)
                if size >= COPY_CHUNK_BYTES:
                    alive()
                    yield b"".join(pending)
                    pending.clear()
                    size = 0
    except GeneratorExit:
        connection.close()  # the client went away mid-copy: the connection is in no state to reuse
        raise
    if pending:
        yield b"".join(pending)
