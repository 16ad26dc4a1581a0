"""PostgreSQL session-level advisory locks, for work that spans calls to Kommo.

Session-level rather than ``pg_advisory_xact_lock``: the work holding them commits its progress step by step
(what Kommo already created must not be lost to a rollback half-way), so no transaction spans it. They are
released in ``finally``; should that fail, the connection is closed, which releases them too (as does a
worker that dies, or a page whose database deadline closed its connection). Other databases (the SQLite
demo mode: one worker, one thread) take no lock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.db import DatabaseError, connection


def advisory_lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for ``name`` (e.g. ``intake:<account>:<identity>``)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def advisory_locks(keys: Iterable[int]) -> Iterator[list[int]]:
    """Holds the locks of ``keys`` for the block, waiting for each, taken in ascending order so that two
    holders of several can never wait on each other in a cycle; yields the keys (sorted)."""
    ordered = sorted(set(keys))
    if connection.vendor != "postgresql" or not ordered:
        yield ordered
        return
    taken: list[int] = []
    try:
        with connection.cursor() as cursor:
            for key in ordered:
                cursor.execute("SELECT pg_advisory_lock(%s)", [key])
                taken.append(key)
        yield ordered
    finally:
        _unlock(taken)


@contextmanager
def advisory_lock_if_free(key: int) -> Iterator[bool]:
    """Holds the lock of ``key`` for the block if no one else holds it; yields whether it does (always on
    other databases). For work that a second caller should be told is under way rather than wait for."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        (taken,) = cursor.fetchone()
    try:
        yield bool(taken)
    finally:
        _unlock([key] if taken else [])


def _unlock(keys: list[int]) -> None:
    try:
        with connection.cursor() as cursor:
            for key in reversed(keys):
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
    except DatabaseError:
        connection.close()
