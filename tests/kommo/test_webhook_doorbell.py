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
