"""Locks per contact identity (a normalised e-mail or an E.164 phone) for intake deduplication.

PostgreSQL session-level advisory locks (``pg_advisory_lock``), taken in ascending key order so that two
submissions sharing several identities can never wait on each other in a cycle. Session-level rather than
``pg_advisory_xact_lock``: intake commits its progress (the Kommo ids it got back) step by step while the
locks are held, so a failure half-way never loses what was already created in Kommo. They are released in
``finally``; should that fail, the connection is closed, which releases them too (as does a worker that
dies). Other databases (the SQLite demo mode) run one worker and take no lock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.db import DatabaseError, connection


def identity_lock_key(*, account_id: int, identity: str) -> int:
    """A signed 64-bit advisory-lock key for one identity of one account."""
    digest = hashlib.blake2b(f"intake:{account_id}:{identity}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def identity_locks(*, account_id: int, identities: Iterable[str]) -> Iterator[list[int]]:
    """Hold the locks of every identity for the duration of the block; yields the keys (sorted)."""
    keys = sorted({identity_lock_key(account_id=account_id, identity=identity) for identity in identities})
    if connection.vendor != "postgresql" or not keys:
        yield keys
        return
    taken: list[int] = []
    try:
        with connection.cursor() as cursor:
            for key in keys:
                cursor.execute("SELECT pg_advisory_lock(%s)", [key])
                taken.append(key)
        yield keys
    finally:
        try:
            with connection.cursor() as cursor:
                for key in reversed(taken):
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        except DatabaseError:
            connection.close()
