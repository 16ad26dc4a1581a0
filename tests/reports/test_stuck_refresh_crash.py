"""The stuck-deals page's queued refresh (``apps.reports.tasks.stuck_refresh_account``) with the suite's real
PostgreSQL server stopped in the middle of it, as a crash would stop it: while the server is down the page
answers a clear 503; once it is back the page answers from the last refresh's states, whole (nothing of the
cut refresh), says they are stale, and the refresh is queued again after one interval rather than never."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.db import DatabaseError, connection

from apps.kommo.models import Lead
from apps.reports.export import stuck
from apps.reports.models import StuckRefresh, StuckState
from apps.reports.tasks import stuck_refresh_account
from tests.reports.desk import NOW, make_desk
from tests.reports.support import html_table, person
from tests.support.services import PostgresServer

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.crashes_postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_a_queued_refresh_cut_by_a_crash_leaves_the_last_states_whole_and_is_queued_again(
    client, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk = make_desk()
    for number in range(5):  # stuck at the last refresh: no open task
        desk.deal(f"Deal {number}", price=1_000 * (number + 1), open_task=False)
    with time_machine.travel(NOW, tick=False):
        stuck.stuck_states_refresh(account=desk.account)  # the last refresh
    before = {row.lead_id: (row.reasons, row.text) for row in StuckState.objects.all()}
    assert len(before) == 5
    head = person("head", "Head of sales")
    client.force_login(head)
    queued: list[int] = []
    monkeypatch.setattr(stuck_refresh_account, "delay", queued.append)
    # Since then every deal got an open task, and a new deal is stuck: the next refresh changes every row.
    Lead.objects.filter(account=desk.account).update(raw={"closest_task_at": int(NOW.timestamp()) + 86400})
    desk.deal("Latecomer", price=90_000, open_task=False)

    with time_machine.travel(NOW + dt.timedelta(minutes=21), tick=False) as clock:
        assert client.get("/reports/stuck/").status_code == 200  # stale: a refresh is queued
        assert queued == [desk.account.pk]

        # The worker runs it; the server crashes after its second batch of rows is sent, before commit.
        monkeypatch.setattr(stuck, "CHUNK", 2)
        batches = 0
        bulk_create = StuckState.objects.bulk_create

        def crash_in_the_second_batch(*args: Any, **kwargs: Any) -> Any:
            nonlocal batches
            written = bulk_create(*args, **kwargs)
            if "reasons" in kwargs.get("update_fields", ()):
                batches += 1
                if batches == 2:
                    postgres_server.stop_now()
            return written

        monkeypatch.setattr(StuckState.objects, "bulk_create", crash_in_the_second_batch)
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = on")  # a commit is durable when it returns
            cursor.execute("CHECKPOINT")  # and those made before, with the suite's setting off, too
        try:
            with pytest.raises(DatabaseError):
                stuck_refresh_account(desk.account.pk)
            connection.close()

            down = client.get("/reports/stuck/")  # the page with its database down

            assert down.status_code == 503
            assert "The database does not answer" in down.content.decode()
        finally:
            connection.close()
            postgres_server.start_again()
        monkeypatch.setattr(StuckState.objects, "bulk_create", bulk_create)

        html = client.get("/reports/stuck/").content.decode()

        # Nothing of the cut refresh: the states of the last one, every row whole, and said to be stale.
        assert {row.lead_id: (row.reasons, row.text) for row in StuckState.objects.all()} == before
        assert [row[0] for row in html_table(html, "deals")[1:]] == [f"Deal {n}" for n in range(4, -1, -1)]
        assert "As of 01 May 2025 12:00: these figures are stale" in html
        assert "a refresh is queued" in html
        assert queued == [desk.account.pk]  # claimed already: not queued twice within an interval

        clock.move_to(NOW + dt.timedelta(minutes=32))  # one interval after the lost refresh was queued
        client.get("/reports/stuck/")
        assert queued == [desk.account.pk] * 2  # queued again, not waiting for ever

        stuck_refresh_account(desk.account.pk)  # the worker runs it this time
        html = client.get("/reports/stuck/").content.decode()

    deals = html_table(html, "deals")[1:]
    assert [row[0] for row in deals] == ["Latecomer", *(f"Deal {n}" for n in range(4, -1, -1))]
    assert {row[0]: row[6] for row in deals}["Deal 0"] == "no stakeholder identified"  # has its task now
    assert "As of 01 May 2025 12:32: the stuck states are refreshed every 10 minutes." in html
    mark = StuckRefresh.objects.get(account=desk.account)
    assert (mark.refreshed_at, mark.queued_at) == (NOW + dt.timedelta(minutes=32), None)
