"""A long response's way to tell gunicorn's arbiter that its worker is alive.

A sync worker tells the arbiter it is alive only between requests (``Worker.notify`` in gunicorn's
``workers/sync.py``), so a response still streaming after ``GUNICORN_TIMEOUT`` seconds has its worker killed
mid-stream, even while every chunk goes out. config/gunicorn.py's ``post_worker_init`` hands the worker's
``notify`` to ``install``; a stream calls ``alive()`` as it makes progress (the BI export's CSV, per chunk).
A worker stuck without progress (a query that never answers, a client that reads nothing) calls nothing and
is still killed at the timeout. Outside gunicorn (runserver, tests, Celery) nothing is installed and
``alive()`` does nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# The worker's heartbeat touches a file (an ``os.utime``): once a second is plenty against a timeout of
# seconds, and costs nothing per chunk.
INTERVAL = 1.0

_beat: Callable[[], None] | None = None
_last = float("-inf")


def install(beat: Callable[[], None] | None) -> None:
    """The current process's heartbeat (gunicorn's ``worker.notify``); None takes it away."""
    global _beat, _last
    _beat = beat
    _last = float("-inf")


def alive() -> None:
    """Progress: beat, at most once every ``INTERVAL`` seconds. Nothing when no heartbeat is installed."""
    global _last
    if _beat is None:
        return
    now = time.monotonic()
    if now - _last >= INTERVAL:
        _last = now
        _beat()
