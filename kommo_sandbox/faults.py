"""Fault injection per account: latency, 5xx, 429s, timeouts, HTML errors and dropped webhooks.

Configured through the admin API (``PUT /_sandbox/faults``). With a ``seed`` the sequence of decisions is
deterministic: the same requests in the same order meet the same faults.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

FaultKind = Literal["error", "rate_limit", "timeout"]


@dataclass
class FaultConfig:
    latency_ms: int = 0
    error_rate: float = 0.0  # share of API requests answered with a 5xx
    error_statuses: list[int] = field(default_factory=lambda: [500, 502, 504])
    rate_limit_rate: float = 0.0  # share answered with 429
    timeout_rate: float = 0.0  # share held for ``timeout_seconds`` and then answered 504
    timeout_seconds: float = 35.0
    html_errors: bool = False  # gateway-style HTML bodies instead of problem+json
    webhook_drop_rate: float = 0.0  # share of webhook deliveries silently dropped
    seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_RATES = ("error_rate", "rate_limit_rate", "timeout_rate", "webhook_drop_rate")


def validate_update(current: FaultConfig, update: dict[str, Any]) -> FaultConfig:
    """A new config from ``current`` plus the keys in ``update``; ``ValueError`` names a bad key."""
    known = {f.name for f in dataclasses.fields(FaultConfig)}
    merged = current.as_dict()
    for key, value in update.items():
        if key not in known:
            raise ValueError(f"unknown fault setting: {key}")
        merged[key] = value
    config = FaultConfig(**merged)
    for name in _RATES:
        rate = getattr(config, name)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ValueError(f"{name} must be a number between 0 and 1")
    if not isinstance(config.latency_ms, int) or config.latency_ms < 0:
        raise ValueError("latency_ms must be a non-negative integer")
    if not isinstance(config.timeout_seconds, int | float) or config.timeout_seconds < 0:
        raise ValueError("timeout_seconds must be a non-negative number")
    if not config.error_statuses or any(s not in (500, 502, 503, 504) for s in config.error_statuses):
        raise ValueError("error_statuses must be a non-empty list of 500, 502, 503, 504")
    if config.seed is not None and not isinstance(config.seed, int):
        raise ValueError("seed must be an integer or null")
    return config


class AccountFaults:
    """The faults of one account and the random source that decides them."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self.configure(config or FaultConfig())

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = config
            self._random = random.Random(config.seed)  # noqa: S311 - fault injection, not cryptography

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self._random.random() < rate

    def decide(self) -> tuple[FaultKind, int] | None:
        """The fault to inject into the next API request, if any: ``(kind, status)``."""
        with self._lock:
            config = self.config
            if self._roll(config.timeout_rate):
                return "timeout", 504
            if self._roll(config.error_rate):
                return "error", self._random.choice(config.error_statuses)
            if self._roll(config.rate_limit_rate):
                return "rate_limit", 429
            return None

    def should_drop_webhook(self) -> bool:
        with self._lock:
            return self._roll(self.config.webhook_drop_rate)


class FaultRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[int, AccountFaults] = {}

    def for_account(self, account_id: int) -> AccountFaults:
        with self._lock:
            return self._accounts.setdefault(account_id, AccountFaults())
