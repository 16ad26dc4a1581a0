"""A test run killed by SIGTERM (``timeout``, a cancelled CI job) leaves none of its servers running: a child
pytest starts PostgreSQL, Redis and a Celery worker, is sent SIGTERM, and then no process of theirs remains
(tests/support/services.py stops them on SIGTERM and SIGINT; SIGINT takes the same path and costs a second
worker start, so only SIGTERM is run here)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support.services import ROOT, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # PostgreSQL run as another user
    # A zombie is a process that has ended and waits for its parent (gone) to be reaped by init.
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout
    return bool(state.strip()) and not state.strip().startswith("Z")


def test_a_run_killed_by_sigterm_leaves_no_server_behind(tmp_path) -> None:
    pids_file = tmp_path / "pids.json"
    env = {**os.environ, "SERVERS_CHILD_PIDS": str(pids_file), "CI": "true", "TEST_DATABASE": "sqlite"}
    env.pop("PYTEST_XDIST_WORKER", None)
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", "tests/support/servers_child.py", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the signal goes to the child pytest alone, as timeout's does to its command
    )
    try:
        wait_for(lambda: pids_file.exists() or child.poll() is not None, timeout=120, message="the servers")
        assert pids_file.exists(), child.communicate()[0].decode(errors="replace")
        pids = json.loads(pids_file.read_text())
        assert all(_alive(pid) for group in pids.values() for pid in group), pids

        child.send_signal(signal.SIGTERM)
        output = child.communicate(timeout=60)[0].decode(errors="replace")
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()

    deadline = time.monotonic() + 15
    left = pids
    while time.monotonic() < deadline:
        left = {name: [pid for pid in group if _alive(pid)] for name, group in pids.items()}
        if not any(left.values()):
            break
        time.sleep(0.2)
    assert not any(left.values()), f"left running: {left}\n{output}"
    assert child.returncode == -signal.SIGTERM  # ended by the signal, as without the handler
