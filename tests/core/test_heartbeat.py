"""apps/core/heartbeat.py: nothing outside gunicorn, at most one beat a second inside it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from apps.core import heartbeat


@pytest.fixture
def beats() -> Iterator[list[float]]:
    seen: list[float] = []
    heartbeat.install(lambda: seen.append(1.0))
    yield seen
    heartbeat.install(None)


def test_without_a_heartbeat_alive_does_nothing() -> None:
    heartbeat.install(None)
    heartbeat.alive()  # runserver, tests, Celery: no worker to tell


def test_alive_beats_at_most_once_a_second(beats: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(heartbeat.time, "monotonic", lambda: now[0])
    for _ in range(50):
        heartbeat.alive()
    assert len(beats) == 1
    now[0] += 0.99
    heartbeat.alive()
    assert len(beats) == 1
    now[0] += 0.01
    heartbeat.alive()
    assert len(beats) == 2
