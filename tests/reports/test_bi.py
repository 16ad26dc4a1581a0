"""The ``bi`` schema on PostgreSQL: one view per export table with the HTTP export's columns and rows, and a
login role that reads those views and is refused everything else; the set-up is idempotent and survives
migrations."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from io import StringIO

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from apps.reports.export.formats import csv_cells
from apps.reports.export.sql import SCHEMA, bi_after_migrate, bi_before_migrate
from apps.reports.export.tables import TABLES
from tests.reports.test_export import World, assert_same_rows

# A write is refused for the read-only default, the missing privilege, or a view that cannot take writes.
REFUSED = (
    psycopg.errors.ReadOnlySqlTransaction,
    psycopg.errors.InsufficientPrivilege,
    psycopg.errors.ObjectNotInPrerequisiteState,
)
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def role() -> Iterator[str]:
    name = f"bi_test_{uuid.uuid4().hex[:8]}"
    yield name
    with connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name])
        if cursor.fetchone():
            cursor.execute(f'DROP OWNED BY "{name}"')
            cursor.execute(f'DROP ROLE "{name}"')


def connect_as(role: str, password: str) -> psycopg.Connection:
    settings = connection.settings_dict
    return psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"],
        dbname=settings["NAME"],
        user=role,
        password=password,
        autocommit=True,
    )


def setup(role: str, tmp_path: object, password: str = "s3cret-pass") -> str:  # noqa: S107 - throwaway server
    secret = tmp_path / "password"  # type: ignore[operator]
    secret.write_text(password + "\n")
    out = StringIO()
    call_command("reports_bi_setup", role=role, password_file=str(secret), stdout=out, stderr=StringIO())
    return out.getvalue().strip()


def test_the_role_reads_every_view_with_the_exports_columns_and_rows(role: str, tmp_path: object) -> None:
    World()
    url = setup(role, tmp_path)
    assert url.startswith(f"postgresql://{role}:s3cret-pass@") and url.endswith(
        connection.settings_dict["NAME"]
    )
    with connect_as(role, "s3cret-pass") as bi:
        for name, table in TABLES.items():
            cursor = bi.execute(f"SELECT * FROM {name} ORDER BY id")  # noqa: S608 - search_path is bi
            columns = [column.name for column in cursor.description or []]
            assert columns == table.column_names, name
            from_view = [csv_cells(table)(row) for row in cursor.fetchall()]
            from_export = [csv_cells(table)(row) for row in table.queryset()]
            assert from_view, name
            assert_same_rows(name, from_view, from_export)


def test_the_role_is_refused_public_tables_and_any_write(role: str, tmp_path: object) -> None:
    World()
    setup(role, tmp_path)
    with connect_as(role, "s3cret-pass") as bi:
        for statement in (
            "SELECT * FROM public.kommo_lead",
            "SELECT * FROM public.reports_exportclient",
            "SELECT * FROM public.users_user",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                bi.execute(statement)
        for statement in (
            "DELETE FROM bi.deals",
            "UPDATE bi.stage_changes SET source = 'x'",
            "CREATE TABLE bi.mine (id int)",
            "CREATE TABLE public.mine (id int)",
        ):
            with pytest.raises(REFUSED):
                bi.execute(statement)
        # Even outside the read-only default, the role holds no write privilege.
        bi.execute("SET default_transaction_read_only = off")
        for statement in ("DELETE FROM bi.deals", "INSERT INTO bi.stage_changes (id) VALUES (1)"):
            with pytest.raises(REFUSED):
                bi.execute(statement)


def test_running_it_again_changes_nothing_and_keeps_the_password(role: str, tmp_path: object) -> None:
    setup(role, tmp_path)
    out = StringIO()
    call_command("reports_bi_setup", role=role, stdout=out, stderr=StringIO())
    assert "<password>" in out.getvalue()  # not printed again, and not changed
    with connect_as(role, "s3cret-pass") as bi:
        assert bi.execute("SELECT count(*) FROM deals").fetchone() == (0,)


def test_the_views_are_dropped_before_migrate_and_made_again_after(role: str, tmp_path: object) -> None:
    setup(role, tmp_path)
    bi_before_migrate()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_views WHERE schemaname = %s", [SCHEMA])
        assert cursor.fetchone() == (0,)
    bi_after_migrate()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_views WHERE schemaname = %s", [SCHEMA])
        assert cursor.fetchone() == (len(TABLES),)
    with connect_as(role, "s3cret-pass") as bi:  # the grants followed the new views
        assert bi.execute("SELECT count(*) FROM gate_decisions").fetchone() == (0,)
