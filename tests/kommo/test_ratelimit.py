"""The portal's own rate limit, shared by threads and processes: Redis-backed and file-backed."""

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import redis

from apps.kommo.exceptions import KommoRateLimited
from apps.kommo.ratelimit import FileSlotStore, RateLimiter, RedisSlotStore, rate_limiter

ROOT = Path(__file__).resolve().parents[2]
RATE = 10
WINDOW = 1.05


def busiest_second(stamps: list[float]) -> int:
    """The most requests that started within any one second."""
    stamps = sorted(stamps)
    return max(sum(1 for other in stamps[i:] if other - stamp < 1.0) for i, stamp in enumerate(stamps))


class SlotClock:
    """The file store's clock, remembering each thread's last reading: the moment the limiter granted a
    slot is that reading plus the wait it returned. A stamp taken after ``acquire`` returns instead moves
    with the scheduler: on a loaded machine a thread resumed late stamps into the next second, and the
    busiest second seemed to hold one request too many."""

    def __init__(self) -> None:
        self._seen = threading.local()

    def __call__(self) -> float:
        self._seen.now = time.time()
        return float(self._seen.now)

    def granted(self, wait: float) -> float:
        return float(self._seen.now) + wait


def acquire_from_threads(
    limiter: RateLimiter, *, threads: int, each: int, key: str = "acct", clock: SlotClock | None = None
) -> list[float]:
    """When each request got its slot: as the limiter's clock says with ``clock`` (the file store's), as
    this process sees it after the wait otherwise (Redis's clock is Redis's)."""
    stamps: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(each):
            wait = limiter.acquire(key, RATE)
            stamp = clock.granted(wait) if clock is not None else time.time()
            with lock:
                stamps.append(stamp)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    return stamps


PROCESS_SCRIPT = textwrap.dedent(
    """
    import sys, time, redis
    from pathlib import Path
    from apps.kommo.ratelimit import FileSlotStore, RateLimiter, RedisSlotStore
    kind, target, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    seen = [0.0]
    def clock():
        seen[0] = time.time()
        return seen[0]
    if kind == "redis":
        store = RedisSlotStore(redis.Redis.from_url(target))
    else:
        store = FileSlotStore(Path(target), clock=clock)
    limiter = RateLimiter(store)
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(count):
        wait = limiter.acquire("acct", RATE)
        # The file store: when the slot was granted, by its clock (see SlotClock).
        print(seen[0] + wait if kind == "file" else time.time(), flush=True)
    """
).replace("RATE", str(RATE))


def acquire_from_processes(kind: str, target: str, *, processes: int, each: int) -> list[float]:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", PROCESS_SCRIPT, kind, target, str(each)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    for child in children:  # start them together
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    stamps: list[float] = []
    for child in children:
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 0
        stamps.extend(float(line) for line in out.split())
    return stamps


@pytest.mark.redis
def test_the_redis_limiter_lets_at_most_the_limit_through_per_second_from_many_threads(redis_url):
    limiter = RateLimiter(RedisSlotStore(redis.Redis.from_url(redis_url)))
    started = time.time()

    stamps = acquire_from_threads(limiter, threads=8, each=4)

    assert len(stamps) == 32
    assert busiest_second(stamps) <= RATE
    assert time.time() - started >= 2 * WINDOW  # 32 requests at 10 per window need three windows


@pytest.mark.redis
def test_the_redis_limiter_is_shared_by_two_processes(redis_url):
    stamps = acquire_from_processes("redis", redis_url, processes=2, each=12)

    assert len(stamps) == 24
    assert busiest_second(stamps) <= RATE
    assert max(stamps) - min(stamps) >= 2 * WINDOW - 0.1


@pytest.mark.redis
def test_accounts_have_separate_limits_in_redis(redis_url):
    limiter = RateLimiter(RedisSlotStore(redis.Redis.from_url(redis_url)))
    for _ in range(RATE):
        limiter.acquire("one", RATE)

    assert limiter.acquire("two", RATE) == 0
    with pytest.raises(KommoRateLimited):
        limiter.acquire("one", RATE, max_wait=0.2)


def test_the_file_limiter_lets_at_most_the_limit_through_per_second_from_many_threads(tmp_path):
    clock = SlotClock()
    limiter = RateLimiter(FileSlotStore(tmp_path, clock=clock))

    stamps = acquire_from_threads(limiter, threads=6, each=4, clock=clock)

    assert len(stamps) == 24
    assert busiest_second(stamps) <= RATE


def test_the_file_limiter_is_shared_by_two_processes(tmp_path):
    stamps = acquire_from_processes("file", str(tmp_path), processes=2, each=12)

    assert len(stamps) == 24
    assert busiest_second(stamps) <= RATE
    assert max(stamps) - min(stamps) >= 2 * WINDOW - 0.1


def test_a_wait_longer_than_the_maximum_is_refused_without_taking_a_slot(tmp_path):
    waits: list[float] = []
    limiter = RateLimiter(FileSlotStore(tmp_path), sleep=waits.append)
    limiter.acquire("acct", 1)

    with pytest.raises(KommoRateLimited) as caught:
        limiter.acquire("acct", 1, max_wait=0.5)

    assert not caught.value.permanent
    # the refused call reserved nothing: the next caller waits one window, not two
    assert limiter.acquire("acct", 1, max_wait=5) <= WINDOW
    assert waits and waits[-1] <= WINDOW


def waiting_for_a_free_slot_reserves_none(store) -> None:
    waits: list[float] = []
    limiter = RateLimiter(store, sleep=waits.append)
    assert limiter.wait_for_free_slot("acct", 2) == 0  # nothing sent yet: free at once
    limiter.acquire("acct", 2)
    limiter.acquire("acct", 2)

    first = limiter.wait_for_free_slot("acct", 2)
    second = limiter.wait_for_free_slot("acct", 2)

    assert 0.9 < first <= WINDOW and 0.9 < second <= first  # both told of the same slot: none taken
    assert waits == [first, second]
    assert limiter.wait_for_free_slot("acct", 2, max_wait=0.1) == 0.1


def test_waiting_for_a_free_file_slot_reserves_none(tmp_path):
    waiting_for_a_free_slot_reserves_none(FileSlotStore(tmp_path))


@pytest.mark.redis
def test_waiting_for_a_free_redis_slot_reserves_none(redis_url):
    waiting_for_a_free_slot_reserves_none(RedisSlotStore(redis.Redis.from_url(redis_url)))


def test_the_limiter_uses_redis_when_redis_url_is_set_and_files_otherwise(settings, tmp_path):
    settings.RUN_DIR = tmp_path
    settings.REDIS_URL = ""
    assert isinstance(rate_limiter().store, FileSlotStore)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    assert isinstance(rate_limiter().store, RedisSlotStore)


def test_a_caller_behind_the_others_lets_a_later_reservation_go_first(tmp_path):
    # One request per second. A task waits behind the others for the next slot; while it waits, a move
    # back reserves: the move gets that slot, the task the one after.
    clock = [100.0]
    store = FileSlotStore(tmp_path, clock=lambda: clock[0])
    moved: list[float | None] = []

    def sleep(seconds: float) -> None:
        if not moved:
            moved.append(store.reserve("acct", 1, 1.0, 30.0))  # the move back, reserving at t=0
        clock[0] += seconds

    limiter = RateLimiter(store, window=1.0, sleep=sleep)
    assert limiter.acquire("acct", 1) == 0  # t=0: the slot is taken

    waited = limiter.acquire("acct", 1, behind_others=True)

    assert moved == [1.0]  # the move back goes at t=1, the first slot after the busy one
    assert waited == pytest.approx(2.0)  # the task at t=2: it never held a slot ahead of the move
    assert clock[0] == pytest.approx(102.0)


def test_a_caller_behind_the_others_still_gives_up_after_its_maximum_wait(tmp_path):
    clock = [0.0]
    store = FileSlotStore(tmp_path, clock=lambda: clock[0])

    def sleep(seconds: float) -> None:
        store.reserve("acct", 1, 1.0, 30.0)  # someone reserves every time it looks away
        clock[0] += seconds

    limiter = RateLimiter(store, window=1.0, sleep=sleep)
    limiter.acquire("acct", 1)

    with pytest.raises(KommoRateLimited):
        limiter.acquire("acct", 1, max_wait=3.0, behind_others=True)
