"""Not collected by the suite (no ``test_`` prefix): run as a child pytest by
``tests/core/test_servers_on_signal.py``, which kills it. Starts the session's PostgreSQL and Redis and a
Celery worker, writes their process ids to ``SERVERS_CHILD_PIDS``, then waits to be killed."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from tests.support.services import CeleryWorker, PostgresServer, RedisServer


def test_servers_wait_to_be_killed(postgres_server: PostgresServer, redis_server: RedisServer) -> None:
    worker = CeleryWorker(broker_url=redis_server.url, database_url=postgres_server.url).start()
    assert worker.process is not None and redis_server.process is not None
    pool = subprocess.run(["pgrep", "-s", str(worker.process.pid)], capture_output=True, text=True)
    pids = {
        "postgres": [postgres_server.postmaster_pid()],
        "redis": [redis_server.process.pid],
        "worker": [int(pid) for pid in pool.stdout.split()],
    }
    target = Path(os.environ["SERVERS_CHILD_PIDS"])
    target.with_suffix(".tmp").write_text(json.dumps(pids))
    target.with_suffix(".tmp").rename(target)
    time.sleep(300)  # killed long before
