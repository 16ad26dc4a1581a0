"""The ``bi`` schema on PostgreSQL: one view per export table, and a login role that reads those views and
nothing else, for Metabase, Power BI or Looker Studio.

Each view is the export table's own query (:meth:`~apps.reports.export.tables.Table.queryset`, compiled by
Django) with the columns renamed to the table's column names, so the views and the HTTP export cannot
drift apart; the view keeps PostgreSQL's types (timestamps, numerics, booleans) for the BI tool to use.

A view pins the columns it reads: PostgreSQL refuses to alter or drop them. So that no migration is ever
refused because of the views, they are dropped before ``migrate`` and made again after it (pre- and
post-migrate receivers), whenever the schema exists; grants follow through the schema's default privileges.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from django.db import connection, transaction

from apps.reports.export.tables import TABLES, Table

SCHEMA = "bi"


def view_sql(table: Table) -> str:
    """SELECT of the table's columns by their export names (no ORDER BY: a view has no order)."""
    sql, params = table.queryset().order_by().query.sql_with_params()
    inner = connection.ops.compose_sql(sql, params)  # type: ignore[attr-defined]  # PostgreSQL's
    columns = ", ".join(
        f"{connection.ops.quote_name('x_' + name)} AS {connection.ops.quote_name(name)}"
        for name in table.column_names
    )
    return f"SELECT {columns} FROM ({inner}) AS export"  # noqa: S608 - compiled by Django, names are ours


def bi_schema_exists() -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [SCHEMA])
        return cursor.fetchone() is not None


def bi_views_drop() -> None:
    with connection.cursor() as cursor:
        for name in TABLES:
            cursor.execute(f"DROP VIEW IF EXISTS {SCHEMA}.{connection.ops.quote_name(name)}")


def bi_views_create() -> list[str]:
    """(Re)creates every view; returns their names."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        for name, table in TABLES.items():
            qualified = f"{SCHEMA}.{connection.ops.quote_name(name)}"
            cursor.execute(f"DROP VIEW IF EXISTS {qualified}")
            cursor.execute(f"CREATE VIEW {qualified} AS {view_sql(table)}")
    return list(TABLES)


@dataclass
class BISetup:
    role: str
    created: bool
    password: str | None  # set now (None: the role's password was left as it was)
    views: list[str]

    def connection_string(self) -> str:
        settings = connection.settings_dict
        secret = quote(self.password, safe="") if self.password else "<password>"
        host, port = settings.get("HOST") or "localhost", settings.get("PORT") or 5432
        return f"postgresql://{quote(self.role, safe='')}:{secret}@{host}:{port}/{settings['NAME']}"


def bi_setup(*, role: str, password: str | None = None) -> BISetup:
    """Creates (or brings up to date) the schema, its views and the read-only login role ``role``. A new
    role without ``password`` gets a random one; an existing role keeps its own unless one is given."""
    if connection.vendor != "postgresql":
        raise ValueError("the bi schema needs PostgreSQL")
    quoted = connection.ops.quote_name(role)
    views = bi_views_create()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        created = cursor.fetchone() is None
        if created and password is None:
            password = secrets.token_urlsafe(24)
        if created:
            cursor.execute(f"CREATE ROLE {quoted} LOGIN")
        if password is not None:
            cursor.execute(f"ALTER ROLE {quoted} LOGIN PASSWORD %s", [password])
        database = connection.ops.quote_name(connection.settings_dict["NAME"])
        statements: list[tuple[str, list[Any]]] = [
            (f"ALTER ROLE {quoted} SET default_transaction_read_only = on", []),
            (f"ALTER ROLE {quoted} SET search_path = {SCHEMA}", []),
            (f"GRANT CONNECT ON DATABASE {database} TO {quoted}", []),
            (f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {quoted}", []),
            (f"REVOKE CREATE ON SCHEMA public FROM {quoted}", []),
            (f"GRANT USAGE ON SCHEMA {SCHEMA} TO {quoted}", []),
            (f"GRANT SELECT ON ALL TABLES IN SCHEMA {SCHEMA} TO {quoted}", []),
            (f"ALTER DEFAULT PRIVILEGES IN SCHEMA {SCHEMA} GRANT SELECT ON TABLES TO {quoted}", []),
        ]
        for statement, params in statements:
            cursor.execute(statement, params)
    return BISetup(role=role, created=created, password=password, views=views)


def bi_before_migrate(**kwargs: Any) -> None:
    if bi_schema_exists():
        bi_views_drop()


def bi_after_migrate(**kwargs: Any) -> None:
    if bi_schema_exists():
        bi_views_create()
