"""Django's PostgreSQL backend, whose connections keep to the request's database budget.

``ENGINE = "apps.core.postgresql"`` (set by ``config.settings.base.apply_postgresql_options``). Everything is
Django's own backend except the psycopg connection class: :class:`BudgetedConnection` bounds each wait on the
server by what is left of the request's budget (``apps/core/timeouts.py``). Outside a bounded request it is
psycopg's connection, unchanged.

A server frozen with a connection open never answers and cannot enforce its own ``statement_timeout``, and
libpq's ``connect_timeout`` counts whole seconds with a floor of 2: psycopg's waits take a timeout, which
this class passes (the time left to the request's deadline), and its connection attempts yield to their
waiting loop at least every 0.1 s, where the deadline is checked. Once it has passed, nothing more is
tried: no query, no connection attempt, not even the resolution of the server's name.
"""

from __future__ import annotations

import types
from collections.abc import Generator
from typing import Any, Self, TypeVar

import psycopg
from django.db.backends.postgresql import base
from psycopg import errors

from apps.core.timeouts import DatabaseBudget, database_budget

RV = TypeVar("RV")
_INTERVAL = 0.1  # psycopg's own interval between checks while waiting (Ctrl-C)


class DatabaseBudgetSpent(errors.OperationalError):
    """A wait on the database outlasted the request's budget. Django raises it as ``OperationalError``."""


def _spent(budget: DatabaseBudget, *, cut: bool = False) -> DatabaseBudgetSpent:
    """The error of a wait refused (the deadline had passed before it began) or ``cut`` at the deadline: only
    the second says the database was too slow, and starts the fast-fail hold."""
    if budget.held:
        return DatabaseBudgetSpent(
            "not tried: the database missed a recent request's deadline (DATABASE_REQUEST_FAST_FAIL_MS)"
        )
    if cut:
        budget.missed = True
    setting = "DATABASE_PAGE_BUDGET_MS" if budget.page else "DATABASE_REQUEST_BUDGET_MS"
    return DatabaseBudgetSpent(
        f"the request's database budget ({budget.seconds * 1000:.0f} ms, {setting}) is spent"
    )


class BudgetedConnection(psycopg.Connection[Any]):
    def wait(self, gen: Any, interval: float = _INTERVAL, timeout: float | None = None) -> Any:
        budget = database_budget()
        if budget is None:
            return super().wait(gen, interval, timeout)
        left = budget.left
        if left <= 0:
            gen.close()
            self.close()
            raise _spent(budget)
        ours = timeout is None or left < timeout
        try:
            done = super().wait(gen, interval, left if ours else timeout)
        except errors._WaitTimeout:
            if not ours:
                raise  # the caller's own timeout
            # Cut short: the server may still run what it was sent (and commit it, in autocommit) once it
            # answers again. Closed, the connection is never used again; a transaction it had open is
            # rolled back by the server when it sees the connection gone.
            self.close()
            raise _spent(budget, cut=True) from None
        budget.waited = True
        return done

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        budget = database_budget()
        if budget is not None and budget.left <= 0:
            raise _spent(budget)  # before psycopg resolves the host's name, which no timeout bounds
        return super().connect(conninfo, **kwargs)

    @classmethod
    def _connect_gen(cls, conninfo: str = "") -> Generator[Any, Any, Any]:
        connecting = super()._connect_gen(conninfo)
        budget = database_budget()
        if budget is None:
            return (yield from connecting)
        try:
            if budget.left <= 0:
                raise _spent(budget)
            waiting_for = next(connecting)
            while True:
                # psycopg's loop sends here when the socket is ready, or after each interval without.
                ready = yield waiting_for
                if budget.left <= 0:
                    raise _spent(budget, cut=True)
                waiting_for = connecting.send(ready)
        except StopIteration as done:
            budget.waited = True
            return done.value
        finally:
            connecting.close()  # an attempt given up: its half-open connection is closed


class _Psycopg(types.ModuleType):
    """psycopg as Django's backend sees it (``DatabaseWrapper.Database``), making budgeted connections."""

    connect = BudgetedConnection.connect

    def __getattr__(self, name: str) -> Any:
        return getattr(psycopg, name)


class DatabaseWrapper(base.DatabaseWrapper):
    Database = _Psycopg("psycopg")
