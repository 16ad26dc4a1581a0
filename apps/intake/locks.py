"""Locks per contact identity (a normalised e-mail or an E.164 phone) for intake deduplication: PostgreSQL
session-level advisory locks (``apps.core.locks``), held while intake commits its progress (the Kommo ids
it got back) step by step, so that a failure half-way never loses what was already created in Kommo."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from apps.core.locks import advisory_lock_key, advisory_locks


def identity_lock_key(*, account_id: int, identity: str) -> int:
    """A signed 64-bit advisory-lock key for one identity of one account."""
    return advisory_lock_key(f"intake:{account_id}:{identity}")


@contextmanager
def identity_locks(*, account_id: int, identities: Iterable[str]) -> Iterator[list[int]]:
    """Hold the locks of every identity for the duration of the block; yields the keys (sorted)."""
    keys = [identity_lock_key(account_id=account_id, identity=identity) for identity in identities]
    with advisory_locks(keys) as held:
        yield held
