"""The BI export's CSV through gunicorn with config/gunicorn.py and a short worker timeout: a stream that
makes progress for longer than the timeout arrives whole, and a worker whose client reads nothing is still
killed at the timeout (apps/core/heartbeat.py)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from apps.kommo.models import StageChange
from apps.reports.export.keys import export_client_create
from tests.core.test_gunicorn_faults import Gunicorn, start_gunicorn  # noqa: F401  (the fixture)
from tests.factories import StatusFactory
from tests.reports.test_export import T0, World
from tests.support.services import wait_for

pytestmark = pytest.mark.postgres

TIMEOUT = 3  # GUNICORN_TIMEOUT, seconds
SLOW_FOR = 2 * TIMEOUT  # how long the slow client reads slowly
MOVES = 14_000
# Stage names of 250 characters: about 600 bytes a row, a CSV of 8 MB. The loopback's socket buffers take
# about 2 MB of what a client has not read yet; the worker stays in its write only while more than that is
# left, and a write blocked on a full buffer returns only once a third of it is free again (about 0.7 MB).
FROM, TO = "Qualification " * 17 + "A", "Legal review " * 19 + "B"


def request(server: Gunicorn, key: str) -> socket.socket:
    """The CSV export's request, HTTP/1.0 (the body is the CSV as it is, to the end of the connection)."""
    url = urlsplit(server.url)
    assert url.hostname is not None and url.port is not None
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # the client's buffer: small, and fixed
    sock.connect((url.hostname, url.port))
    sock.sendall(
        f"GET /api/v1/export/stage_changes?format=csv HTTP/1.0\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {key}\r\n\r\n".encode()
    )
    return sock


def read_slowly_then_the_rest(sock: socket.socket, into: bytearray) -> None:
    """A slow BI tool: 16 KiB at a time, 15 ms apart (under 1 MiB/s), for SLOW_FOR seconds; the rest as
    fast as it comes."""
    until = time.monotonic() + SLOW_FOR
    while data := sock.recv(16384 if time.monotonic() < until else 1 << 20):
        into += data
        if time.monotonic() < until:
            time.sleep(0.015)
    sock.close()


def test_a_csv_streaming_longer_than_the_timeout_arrives_whole_and_a_stuck_worker_is_still_killed(
    start_gunicorn: Callable[..., Gunicorn],  # noqa: F811
) -> None:
    world = World()
    lead = world.open_deal
    stages = [
        StatusFactory(account=world.account, pipeline=world.pipeline, kommo_id=kommo_id, name=name, sort=sort)
        for kommo_id, name, sort in ((40, FROM, 40), (50, TO, 50))
    ]
    StageChange.objects.bulk_create(
        StageChange(
            account=world.account,
            lead=lead,
            from_status=stages[0],
            from_status_kommo_id=40,
            from_pipeline_kommo_id=100,
            to_status=stages[1],
            to_status_kommo_id=50,
            to_pipeline_kommo_id=100,
            at=T0 + dt.timedelta(seconds=n),
            source="sync",
        )
        for n in range(MOVES)
    )
    before = StageChange.objects.count() - MOVES
    key = export_client_create(name="Power BI")[1]
    server = start_gunicorn(GUNICORN_TIMEOUT=str(TIMEOUT))

    # Two workers: one streams to the slow client, the other to a client that reads nothing at all.
    body = bytearray()
    slow = request(server, key)
    started = time.monotonic()
    reader = threading.Thread(target=read_slowly_then_the_rest, args=(slow, body))
    reader.start()
    time.sleep(0.2)
    stuck = request(server, key)
    reader.join(timeout=60)
    took = time.monotonic() - started
    wait_for(lambda: "WORKER TIMEOUT" in server.log(), timeout=30, message="the stuck worker is killed")
    stuck.close()

    head, _, csv_bytes = bytes(body).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK") or head.startswith(b"HTTP/1.1 200 OK"), head
    assert len(csv_bytes) > 7_000_000, f"cut after {len(csv_bytes)} bytes"
    assert csv_bytes.endswith(b"\n"), csv_bytes[-200:]
    rows = list(csv.reader(io.StringIO(csv_bytes.decode())))
    assert len(rows) == 1 + before + MOVES  # the header, the world's own moves, those above
    last = dict(zip(rows[0], rows[-1], strict=True))  # the last line whole
    assert (last["from_stage_name"], last["to_stage_name"]) == (FROM, TO)
    assert last["at"] == (T0 + dt.timedelta(seconds=MOVES - 1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert took > SLOW_FOR > TIMEOUT, took
    log = server.log()
    # The worker whose client reads nothing is killed once its write has waited the timeout; the one that
    # streamed slowly for longer than that never was.
    assert log.count("WORKER TIMEOUT") == 1, log[-3000:]
