"""The BI export's stuck refresh (``apps.reports.tasks.export_stuck_refresh``) with the suite's real
PostgreSQL server stopped in the middle of it, as a crash would stop it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import DatabaseError, connection
from django.utils import timezone

from apps.kommo.models import Lead
from apps.reports import tasks
from apps.reports.export import stuck
from apps.reports.models import StuckRefresh, StuckState
from apps.reports.selectors.stuck import stuck_reason_codes
from tests.reports.test_export import World
from tests.support.services import PostgresServer

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.crashes_postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

OLDER = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)


def test_a_refresh_cut_by_a_database_crash_leaves_every_older_row_and_the_next_run_replaces_them(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World()
    for n in range(5):
        world.lead(600 + n, f"Open deal {n}", 1000 * n, 10)
    # What an earlier refresh wrote, every answer different from the one about to be written.
    StuckState.objects.all().delete()
    open_deals = list(
        Lead.objects.filter(account=world.account)
        .exclude(status_kommo_id=142)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    assert len(open_deals) == 7
    StuckState.objects.bulk_create(
        StuckState(lead_id=pk, account=world.account, reasons="older_reason", changed=OLDER)
        for pk in open_deals
    )
    refreshed_at = StuckRefresh.objects.get(account=world.account).refreshed_at
    # Three deals a transaction instead of 10,000: the second transaction is the one the crash cuts.
    monkeypatch.setattr(stuck, "CHUNK", 3)
    chunks = 0
    bulk_create = StuckState.objects.bulk_create

    def crash_before_the_second_commit(*args: Any, **kwargs: Any) -> Any:
        nonlocal chunks
        written = bulk_create(*args, **kwargs)  # an INSERT … ON CONFLICT of the chunk, not committed yet
        if "reasons" in kwargs.get("update_fields", ()):  # the chunk's rows whose reasons changed
            chunks += 1
            if chunks == 2:
                postgres_server.stop_now()
        return written

    monkeypatch.setattr(StuckState.objects, "bulk_create", crash_before_the_second_commit)
    with connection.cursor() as cursor:
        # A commit is durable when it returns, as on a production server (the suite's server has it off).
        cursor.execute("SET synchronous_commit = on")
        # What was committed so far (with the suite's synchronous_commit off) is written out too, as a
        # production server would have it: the crash may take only what is not committed.
        cursor.execute("CHECKPOINT")
    try:
        with pytest.raises(DatabaseError):
            tasks.export_stuck_refresh()
    finally:
        connection.close()
        postgres_server.start_again()
    monkeypatch.undo()

    # The refresh is one transaction: the crash lost it whole, the first batch with the second, and the
    # account is not marked refreshed. Every row is the earlier refresh's, beside that refresh's time.
    assert StuckRefresh.objects.get(account=world.account).refreshed_at == refreshed_at
    rows = {row.lead_id: (row.reasons, row.changed) for row in StuckState.objects.all()}
    assert rows == dict.fromkeys(open_deals, ("older_reason", OLDER))  # no row lost, none half-new
    # The next run (beat, every REPORTS_EXPORT_STUCK_MINUTES) writes them all.
    assert tasks.export_stuck_refresh() == 7
    now = timezone.now()
    expected = {
        pk: ";".join(codes) for pk, codes in stuck_reason_codes(account=world.account, now=now).items()
    }
    assert {row.lead_id: row.reasons for row in StuckState.objects.all()} == {
        pk: expected.get(pk, "") for pk in open_deals
    }
    assert not StuckState.objects.filter(changed=OLDER).exists()
    assert StuckRefresh.objects.get(account=world.account).refreshed_at > refreshed_at
