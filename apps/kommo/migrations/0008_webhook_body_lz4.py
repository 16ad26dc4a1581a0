"""Webhook bodies (2–5 KB as Kommo sends them) cross PostgreSQL's 2 KB compression threshold: lz4
compresses them for about a sixth less server CPU per INSERT than the default pglz (docs/webhooks.md).
PostgreSQL 14+ built with lz4 only; elsewhere nothing changes."""

from django.db import migrations


def _lz4_available(schema_editor) -> bool:
    connection = schema_editor.connection
    if connection.vendor != "postgresql" or connection.pg_version < 140000:
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
        row = cursor.fetchone()
    return bool(row and row[0])


def compress_with_lz4(apps, schema_editor) -> None:
    if _lz4_available(schema_editor):
        schema_editor.execute('ALTER TABLE "kommo_webhookevent" ALTER COLUMN "body" SET COMPRESSION lz4')


def compress_by_default(apps, schema_editor) -> None:
    if _lz4_available(schema_editor):
        schema_editor.execute('ALTER TABLE "kommo_webhookevent" ALTER COLUMN "body" SET COMPRESSION default')


class Migration(migrations.Migration):
    dependencies = [("kommo", "0007_webhook_event_lean_indexes")]

    operations = [migrations.RunPython(compress_with_lz4, compress_by_default)]
