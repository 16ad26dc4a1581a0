"""Kommo's rate limits (API.md §2): token buckets per (account, token) and per account, 429, then a 403 block.

Defaults: 7 requests/s per token and 50 requests/s per account; more than 30 answers of 429 within 60 s
blocks the account: every request then gets the nginx 403 page until an admin unblocks it.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Verdict = Literal["ok", "limited", "blocked"]


@dataclass
class RateLimitConfig:
    per_token_rps: float = 7.0
    per_account_rps: float = 50.0
    block_threshold: int = 30  # more than this many 429s ...
    block_window_seconds: float = 60.0  # ... within this window blocks the account
    html_429: bool = False  # answer 429 with the gateway's HTML page instead of problem+json
    retry_after: int | None = None  # fixed ``retry_after``; None: the seconds until a request would pass
    enabled: bool = True

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def validate_update(current: RateLimitConfig, update: dict[str, Any]) -> RateLimitConfig:
    known = {f.name for f in dataclasses.fields(RateLimitConfig)}
    merged = current.as_dict()
    for key, value in update.items():
        if key not in known:
            raise ValueError(f"unknown rate limit setting: {key}")
        merged[key] = value
    config = RateLimitConfig(**merged)
    for name in ("per_token_rps", "per_account_rps", "block_window_seconds"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{name} must be a positive number")
    if not isinstance(config.block_threshold, int) or config.block_threshold < 0:
        raise ValueError("block_threshold must be a non-negative integer")
    if config.retry_after is not None and (not isinstance(config.retry_after, int) or config.retry_after < 0):
        raise ValueError("retry_after must be a non-negative integer or null")
    return config


class TokenBucket:
    """``rate`` tokens per second, holding at most ``rate`` tokens (one second of burst)."""

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.updated = now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.rate, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def available(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= 1

    def take(self) -> None:
        self.tokens -= 1

    def wait_seconds(self) -> float:
        return max(0.0, (1 - self.tokens) / self.rate)


@dataclass
class Decision:
    verdict: Verdict
    retry_after: int = 0


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._configs: dict[int, RateLimitConfig] = {}
        self._token_buckets: dict[tuple[int, str], TokenBucket] = {}
        self._account_buckets: dict[int, TokenBucket] = {}
        self._rejections: dict[int, deque[float]] = {}
        self._blocked: set[int] = set()

    def config(self, account_id: int) -> RateLimitConfig:
        with self._lock:
            return self._configs.setdefault(account_id, RateLimitConfig())

    def configure(self, account_id: int, config: RateLimitConfig) -> None:
        with self._lock:
            self._configs[account_id] = config
            self._token_buckets = {k: v for k, v in self._token_buckets.items() if k[0] != account_id}
            self._account_buckets.pop(account_id, None)

    def is_blocked(self, account_id: int) -> bool:
        with self._lock:
            return account_id in self._blocked

    def unblock(self, account_id: int) -> None:
        with self._lock:
            self._blocked.discard(account_id)
            self._rejections.pop(account_id, None)

    def check(self, account_id: int, token: str) -> Decision:
        """Count one request; ``ok``, ``limited`` (answer 429) or ``blocked`` (answer the 403 page)."""
        with self._lock:
            if account_id in self._blocked:
                return Decision("blocked")
            config = self._configs.setdefault(account_id, RateLimitConfig())
            if not config.enabled:
                return Decision("ok")
            now = self._clock()
            token_bucket = self._token_buckets.get((account_id, token))
            if token_bucket is None:
                token_bucket = self._token_buckets[(account_id, token)] = TokenBucket(
                    config.per_token_rps, now
                )
            account_bucket = self._account_buckets.get(account_id)
            if account_bucket is None:
                account_bucket = self._account_buckets[account_id] = TokenBucket(config.per_account_rps, now)
            token_ok, account_ok = token_bucket.available(now), account_bucket.available(now)
            if token_ok and account_ok:
                token_bucket.take()
                account_bucket.take()
                return Decision("ok")
            rejections = self._rejections.setdefault(account_id, deque())
            rejections.append(now)
            while rejections and rejections[0] < now - config.block_window_seconds:
                rejections.popleft()
            if len(rejections) > config.block_threshold:
                self._blocked.add(account_id)
            wait = max(token_bucket.wait_seconds(), account_bucket.wait_seconds())
            retry_after = config.retry_after if config.retry_after is not None else max(1, math.ceil(wait))
            return Decision("limited", retry_after)
