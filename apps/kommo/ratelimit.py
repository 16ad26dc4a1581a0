"""The portal's own rate limit on Kommo, shared by every process of the portal.

Kommo answers 429 above about 7 requests per second and blocks an account (HTML 403) that keeps doing
it, so the portal must never exceed the limit by itself, whichever worker sends the request. Both
limiters keep a sliding log of the last ``limit`` send times per account and *reserve* the next slot:
a slot is never earlier than ``window`` after the ``limit``-th previous one, so no window of that length
ever holds more than ``limit`` requests. The caller sleeps until its slot (bounded by ``max_wait``). A
caller that gathers work into one request may first wait until a slot is free without reserving one
(:meth:`RateLimiter.wait_for_free_slot`), so that it gathers what arrives meanwhile. A caller that can
wait (the gates' tasks and notes) goes *behind the others*: it takes a slot only when one is free at once
and reserves none ahead, so a caller that reserves (a move back, a re-fetch) is never queued behind it.

- With ``REDIS_URL``: one atomic Lua script on a sorted set, with Redis's clock as the only clock.
- Without (the zero-setup mode): a JSON file per account under ``RUN_DIR``, guarded by ``fcntl.flock``,
  so several local processes still share one limit.
"""

from __future__ import annotations

import fcntl
import json
import math
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Protocol

import redis
from django.conf import settings

from apps.kommo.exceptions import KommoRateLimited

# A little longer than a second: requests reserved back to back can reach Kommo with different network
# delays, and Kommo's own window must still never see more than the limit.
WINDOW_SECONDS = 1.05
DEFAULT_MAX_WAIT_SECONDS = 30.0
# A caller behind the others takes a slot this close to free as free.
FREE_NOW_SECONDS = 0.002


class SlotStore(Protocol):
    def reserve(self, key: str, limit: int, window: float, max_wait: float) -> float | None:
        """Reserve the next slot; return seconds until it, or None (nothing reserved) beyond max_wait."""

    def free_in(self, key: str, limit: int, window: float) -> float:
        """Seconds until the next slot, reserving nothing."""


class RateLimiter:
    """Blocks until the account may send one more request."""

    def __init__(
        self,
        store: SlotStore,
        *,
        window: float = WINDOW_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.window = window
        self.sleep = sleep

    def acquire(
        self,
        key: str,
        rate_per_second: float,
        *,
        max_wait: float = DEFAULT_MAX_WAIT_SECONDS,
        behind_others: bool = False,
    ) -> float:
        """Wait for a slot; return the seconds waited. Raises KommoRateLimited when the wait would exceed
        ``max_wait`` (nothing is reserved then). ``behind_others``: take only a slot free at once, waiting
        for one to free up without reserving it, so that callers who reserve go first."""
        limit, window = _limit_and_window(rate_per_second, self.window)
        if behind_others:
            return self._acquire_behind_others(key, limit, window, max_wait)
        wait = self.store.reserve(key, limit, window, max_wait)
        if wait is None:
            raise _no_slot(max_wait)
        if wait > 0:
            self.sleep(wait)
        return wait

    def _acquire_behind_others(self, key: str, limit: int, window: float, max_wait: float) -> float:
        waited = 0.0
        while True:
            wait = self.store.reserve(key, limit, window, FREE_NOW_SECONDS)
            if wait is not None:
                if wait > 0:
                    self.sleep(wait)
                return waited + wait
            free = max(self.store.free_in(key, limit, window), FREE_NOW_SECONDS)
            if waited + free > max_wait:
                raise _no_slot(max_wait)
            self.sleep(free)
            waited += free

    def wait_for_free_slot(
        self, key: str, rate_per_second: float, *, max_wait: float = DEFAULT_MAX_WAIT_SECONDS
    ) -> float:
        """Wait until a slot is free, reserving none, at most ``max_wait``; return the seconds waited.

        For a caller that gathers work into one request: what it gathers after the wait includes whatever
        arrived while the request could not have gone out anyway.
        """
        limit, window = _limit_and_window(rate_per_second, self.window)
        wait = min(self.store.free_in(key, limit, window), max_wait)
        if wait > 0:
            self.sleep(wait)
        return wait


def _no_slot(max_wait: float) -> KommoRateLimited:
    return KommoRateLimited(
        f"no free slot within {max_wait:.0f}s under the portal's own limit", retry_after=max_wait
    )


def _limit_and_window(rate_per_second: float, window: float) -> tuple[int, float]:
    """N requests per ``window``; a fractional rate (0.5/s) becomes one request per 1/rate seconds."""
    if rate_per_second <= 0:
        raise ValueError("the rate limit must be positive")
    if rate_per_second >= 1:
        return math.floor(rate_per_second), window
    return 1, window / rate_per_second


_RESERVE_SCRIPT = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local take = ARGV[4] == '1'
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
local slot = now
if count >= limit then
  local nth = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
  slot = math.max(now, tonumber(nth[2]) + window)
end
local wait = slot - now
if not take then
  return wait
end
if wait > max_wait then
  return -1
end
local seq = redis.call('INCR', key .. ':seq')
redis.call('ZADD', key, slot, string.format('%.0f', slot) .. ':' .. seq)
local ttl = math.ceil((wait + window) / 1000) + 1000
redis.call('PEXPIRE', key, ttl)
redis.call('PEXPIRE', key .. ':seq', ttl)
return wait
"""


class RedisSlotStore:
    """Slots in a Redis sorted set per key (scores in microseconds of Redis's clock)."""

    def __init__(self, client: redis.Redis, *, prefix: str = "kommo:ratelimit:") -> None:
        self.client = client
        self.prefix = prefix
        self.script = client.register_script(_RESERVE_SCRIPT)

    def reserve(self, key: str, limit: int, window: float, max_wait: float) -> float | None:
        wait = int(
            self.script(keys=[self.prefix + key], args=[limit, int(window * 1e6), int(max_wait * 1e6), 1])
        )
        return None if wait < 0 else wait / 1e6

    def free_in(self, key: str, limit: int, window: float) -> float:
        return int(self.script(keys=[self.prefix + key], args=[limit, int(window * 1e6), 0, 0])) / 1e6


class FileSlotStore:
    """Slots in a JSON file per key, under an exclusive ``flock``; the clock is the machine's wall clock,
    the one clock every local process shares."""

    def __init__(self, folder: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.folder = folder
        self.clock = clock

    def reserve(self, key: str, limit: int, window: float, max_wait: float) -> float | None:
        return self._next(key, limit, window, max_wait, take=True)

    def free_in(self, key: str, limit: int, window: float) -> float:
        wait = self._next(key, limit, window, math.inf, take=False)
        assert wait is not None  # nothing is beyond an infinite wait
        return wait

    def _next(self, key: str, limit: int, window: float, max_wait: float, *, take: bool) -> float | None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{key}.json"
        with open(path, "a+", encoding="utf-8") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                handle.seek(0)
                text = handle.read()
                slots: list[float] = json.loads(text) if text.strip() else []
                now = self.clock()
                slots = [slot for slot in slots if slot > now - window]
                slot = now if len(slots) < limit else max(now, slots[-limit] + window)
                if not take:
                    return slot - now
                if slot - now > max_wait:
                    return None
                slots.append(slot)
                handle.seek(0)
                handle.truncate()
                handle.write(json.dumps(slots[-limit:]))
                handle.flush()
                return slot - now
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@cache
def _limiter_for(redis_url: str, run_dir: str) -> RateLimiter:
    if redis_url:
        return RateLimiter(RedisSlotStore(redis.Redis.from_url(redis_url)))
    return RateLimiter(FileSlotStore(Path(run_dir) / "kommo-ratelimit"))


def rate_limiter() -> RateLimiter:
    """The limiter for this process: Redis-backed with REDIS_URL, file-backed without."""
    return _limiter_for(settings.REDIS_URL, str(settings.RUN_DIR))
