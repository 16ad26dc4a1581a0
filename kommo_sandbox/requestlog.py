"""A bounded, read-only log of the requests the sandbox answered; tests count the portal's calls with it."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class LoggedRequest:
    seq: int
    at: float
    account_id: int | None
    method: str
    path: str
    query: str
    status: int
    duration_ms: float
    request_id: str


class RequestLog:
    def __init__(self, capacity: int = 20000) -> None:
        self._lock = threading.Lock()
        self._entries: deque[LoggedRequest] = deque(maxlen=capacity)
        self._seq = 0

    def add(self, **fields: Any) -> None:
        with self._lock:
            self._seq += 1
            self._entries.append(LoggedRequest(seq=self._seq, **fields))

    def entries(
        self, account_id: int | None = None, since: int = 0, path_prefix: str = ""
    ) -> list[dict[str, Any]]:
        with self._lock:
            return [
                asdict(e)
                for e in self._entries
                if e.seq > since
                and (account_id is None or e.account_id in (account_id, None))
                and e.path.startswith(path_prefix)
            ]

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
