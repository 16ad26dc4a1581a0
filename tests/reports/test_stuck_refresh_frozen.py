"""The stuck-deals page's queued refresh with the suite's real PostgreSQL server frozen in the middle of it
(every server process stopped with SIGSTOP, as a host that hangs): a page that connects meanwhile answers a
clear 503 within the connect timeout; once the server runs again the refresh finishes, and the page shows
its states with nothing left queued."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest
import time_machine
from django.db import connection

from apps.reports.export import stuck
from apps.reports.models import StuckRefresh, StuckState
from apps.reports.tasks import stuck_refresh_account
from tests.reports.desk import NOW, make_desk
from tests.reports.support import html_table, person
from tests.support.services import PostgresServer

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_a_queued_refresh_frozen_midway_finishes_once_the_server_runs_again(
    client, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk = make_desk()
    for number in range(5):
        desk.deal(f"Deal {number}", price=1_000 * (number + 1), open_task=False)
    queued: list[int] = []
    monkeypatch.setattr(stuck_refresh_account, "delay", queued.append)
    monkeypatch.setattr(stuck, "CHUNK", 2)
    client.force_login(person("head", "Head of sales"))
    sent, frozen = threading.Event(), threading.Event()
    bulk_create = StuckState.objects.bulk_create

    def wait_for_the_freeze(*args: Any, **kwargs: Any) -> Any:
        written = bulk_create(*args, **kwargs)
        if "reasons" in kwargs.get("update_fields", ()) and not sent.is_set():
            sent.set()  # the first batch is sent, not committed: the server freezes now
            frozen.wait(timeout=30)
        return written

    failures: list[BaseException] = []

    def worker() -> None:  # what the Celery worker runs, on a connection of its own
        try:
            with time_machine.travel(NOW, tick=False):
                stuck_refresh_account(desk.account.pk)
        except BaseException as error:  # reported by the test
            failures.append(error)
        finally:
            connection.close()

    with time_machine.travel(NOW, tick=False):
        assert "Being computed" in client.get("/reports/stuck/").content.decode()
    assert queued == [desk.account.pk]
    monkeypatch.setattr(StuckState.objects, "bulk_create", wait_for_the_freeze)
    running = threading.Thread(target=worker)
    running.start()
    assert sent.wait(timeout=30)
    with postgres_server.frozen():
        frozen.set()
        connection.close()  # the page's request connects anew, as a new web process would
        started = time.monotonic()

        down = client.get("/reports/stuck/")

        assert down.status_code == 503
        assert "The database does not answer" in down.content.decode()
        assert time.monotonic() - started < 10  # the connect timeout (2 s), not the freeze's length
        running.join(timeout=1)
        assert running.is_alive()  # the refresh waits on the frozen server
    running.join(timeout=60)
    assert not running.is_alive() and failures == []

    with time_machine.travel(NOW + dt.timedelta(minutes=1), tick=False):
        html = client.get("/reports/stuck/").content.decode()

    assert [row[0] for row in html_table(html, "deals")[1:]] == [f"Deal {n}" for n in range(4, -1, -1)]
    assert "As of 01 May 2025 12:00: the stuck states are refreshed every 10 minutes." in html
    mark = StuckRefresh.objects.get(account=desk.account)
    assert (mark.refreshed_at, mark.queued_at) == (NOW, None)
