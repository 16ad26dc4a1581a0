"""Who is writing the mirror right now: a manager's page, webhook processing, a sync, intake, the portal.

The mirror's upserts do not know why they run; the apps above read :func:`current_provenance` when they
record what changed (the stakeholders' history). Each entry point says what it is with
:func:`mirror_provenance`; the outermost one wins, so a manager's change that re-reads the deal through a
sync helper is still the manager's. Nothing set means a sync.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from functools import wraps
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class MirrorSource(StrEnum):
    MANAGER = "manager"  # a person on the portal's pages
    WEBHOOK = "webhook"  # a Kommo edit, told by a webhook
    SYNC = "sync"  # a Kommo edit, found by a sync or the events sweep
    INTAKE = "intake"  # the lead intake API
    PORTAL = "portal"  # the portal on its own (e.g. a touch from an approval change)


@dataclass(frozen=True)
class Provenance:
    source: MirrorSource
    user_id: int | None = None  # the portal user, for changes made on the portal's pages


_DEFAULT = Provenance(MirrorSource.SYNC)
_current: ContextVar[Provenance | None] = ContextVar("mirror_provenance", default=None)


def current_provenance() -> Provenance:
    return _current.get() or _DEFAULT


@contextmanager
def mirror_provenance(source: MirrorSource, *, user_id: int | None = None) -> Iterator[Provenance]:
    """Mark the mirror writes inside the block as coming from ``source`` (unless an outer block already
    said where they come from)."""
    outer = _current.get()
    if outer is not None:
        yield outer
        return
    token = _current.set(Provenance(source, user_id))
    try:
        yield current_provenance()
    finally:
        _current.reset(token)


def provenance(source: MirrorSource) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator form of :func:`mirror_provenance` for an entry point."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with mirror_provenance(source):
                return function(*args, **kwargs)

        return wrapper

    return decorate
