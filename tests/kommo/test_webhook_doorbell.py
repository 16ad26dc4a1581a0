"""The request's doorbell: at most one processing task per account per window from a process, every
committed event followed by a publish within the window, the later ones sent by one thread of the process."""

from __future__ import annotations

import os
import threading
import time

import pytest

from apps.kommo.webhooks import intake

WINDOW = 0.3  # seconds; long enough for a burst of rings to fall inside it on a loaded machine


class Published:
    """The publishes a doorbell made: (event id, the thread that made it)."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, int]] = []
        self.changed = threading.Condition()

    def __call__(self, event_id: int) -> None:
        with self.changed:
            self.sent.append((event_id, threading.get_ident()))
            self.changed.notify_all()

    def wait_for(self, count: int) -> list[tuple[int, int]]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.sent) >= count, timeout=10), self.sent
            return list(self.sent)


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> Published:
    recorder = Published()
    monkeypatch.setattr(intake, "_publish", recorder)
    return recorder


def test_a_burst_costs_one_publish_at_once_and_one_when_the_window_ends(published) -> None:
    doorbell = intake._Doorbell()

    for event_id in range(1, 21):
        doorbell.ring(account_id=1, event_id=event_id, window=WINDOW)

    assert published.sent == [(1, threading.get_ident())]  # the first at once, in the request
    assert [event for event, _ in published.wait_for(2)] == [1, 2]
    time.sleep(WINDOW * 2)
    assert len(published.sent) == 2


def test_the_later_publishes_of_every_window_and_account_come_from_one_thread(published) -> None:
    doorbell = intake._Doorbell()
    threads_before = threading.active_count()

    for burst in range(3):
        for account_id in (1, 2):
            for event_id in range(10):
                doorbell.ring(account_id=account_id, event_id=event_id, window=WINDOW)
        # Each account: the first burst's first event at once, then one publish when each window ends
        # (the next burst rings within the window that the last publish opened).
        published.wait_for(4 + 2 * burst)

    delayed = [thread for _, thread in published.sent if thread != threading.get_ident()]
    assert len(delayed) >= 2
    assert len(set(delayed)) == 1
    assert threading.active_count() <= threads_before + 1


def test_a_forked_process_rings_its_own_doorbell(published) -> None:
    doorbell = intake._Doorbell()
    doorbell.ring(account_id=1, event_id=1, window=60)
    doorbell.ring(account_id=1, event_id=2, window=60)  # due in a minute, by the parent's thread
    reading, writing = os.pipe()

    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            doorbell.ring(account_id=1, event_id=3, window=60)
            os.write(writing, ",".join(str(event) for event, _ in published.sent).encode())
        finally:
            os._exit(0)
    os.close(writing)
    reported = os.read(reading, 100).decode()
    os.close(reading)
    os.waitpid(child, 0)

    # The child inherits nothing of the parent's windows: its delivery is published at once.
    assert reported.endswith("3")


CALM = 0.1  # seconds: the window while an account is calm
FLOOD = 0.6  # seconds: its window under a flood, far enough from CALM to tell apart on a loaded machine


class Timed(Published):
    """The publishes with when they were made (monotonic seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.at: list[float] = []

    def __call__(self, event_id: int) -> None:
        with self.changed:
            self.at.append(time.monotonic())
        super().__call__(event_id)


@pytest.fixture
def timed(monkeypatch: pytest.MonkeyPatch) -> Timed:
    recorder = Timed()
    monkeypatch.setattr(intake, "_publish", recorder)
    return recorder


def _flood(doorbell: intake._Doorbell, timed: Timed, *, first: int, published_before: int) -> None:
    """Rings account 1 with more deliveries than FLOOD_RINGS within one window; waits for its publish."""
    for event_id in range(first, first + intake.FLOOD_RINGS + 5):
        doorbell.ring(account_id=1, event_id=event_id, window=CALM, flood_window=FLOOD)
    timed.wait_for(published_before + 1)


def test_a_flood_lengthens_the_next_window_and_every_delivery_is_still_published_within_it(timed) -> None:
    doorbell = intake._Doorbell()
    doorbell.ring(account_id=1, event_id=1, window=CALM, flood_window=FLOOD)  # at once
    _flood(doorbell, timed, first=2, published_before=1)  # the window after the first held a flood

    rung = time.monotonic()
    doorbell.ring(account_id=1, event_id=50, window=CALM, flood_window=FLOOD)
    doorbell.ring(account_id=1, event_id=51, window=CALM, flood_window=FLOOD)
    sent = timed.wait_for(3)

    assert [event for event, _ in sent] == [1, 2, 50]
    # The third publish ends a flood window opened by the second, not a calm one; no later than it.
    assert timed.at[2] - timed.at[1] >= FLOOD * 0.95
    assert timed.at[2] - rung <= FLOOD + 0.5
    time.sleep(FLOOD * 1.5)
    assert len(timed.sent) == 3  # event 51 went with 50's publish


def test_a_paced_stream_never_lengthens_the_window(timed) -> None:
    doorbell = intake._Doorbell()

    # Two deliveries a window (fewer than FLOOD_RINGS within one), as a steady stream with jitter would.
    for event_id in range(1, 13):
        doorbell.ring(account_id=1, event_id=event_id, window=CALM, flood_window=FLOOD)
        time.sleep(CALM * 0.6)
    timed.wait_for(1)
    time.sleep(CALM * 2)

    gaps = [later - earlier for earlier, later in zip(timed.at, timed.at[1:], strict=False)]
    assert len(timed.sent) >= 6
    assert max(gaps) < FLOOD * 0.8, gaps  # each window the calm one (a loaded machine's slack allowed)


def test_a_calm_window_returns_the_account_to_the_short_one(timed) -> None:
    doorbell = intake._Doorbell()
    doorbell.ring(account_id=1, event_id=1, window=CALM, flood_window=FLOOD)
    _flood(doorbell, timed, first=2, published_before=1)

    # The flood window holds one delivery: published when it ends, and the next window is calm again.
    doorbell.ring(account_id=1, event_id=20, window=CALM, flood_window=FLOOD)
    timed.wait_for(3)
    doorbell.ring(account_id=1, event_id=21, window=CALM, flood_window=FLOOD)
    timed.wait_for(4)
    assert timed.at[3] - timed.at[2] < FLOOD * 0.8

    # After a flood, a delivery once a flood window has passed with none is published at once.
    _flood(doorbell, timed, first=30, published_before=4)
    time.sleep(FLOOD * 1.2)
    doorbell.ring(account_id=1, event_id=40, window=CALM, flood_window=FLOOD)
    assert timed.sent[-1] == (40, threading.get_ident())
    doorbell.ring(account_id=1, event_id=41, window=CALM, flood_window=FLOOD)
    timed.wait_for(7)
    assert timed.at[6] - timed.at[5] < FLOOD * 0.8
