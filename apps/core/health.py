"""Reachability checks of the database and the broker, for the health endpoint."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import connections

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str


def database_check() -> CheckResult:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        logger.warning("health: database unreachable: %s", exc)
        return CheckResult(ok=False, detail=type(exc).__name__)
    return CheckResult(ok=True, detail=connections["default"].vendor)


def broker_check(timeout: float = 1.0) -> CheckResult:
    from config.celery import app

    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
            transport = connection.transport_cls
    except Exception as exc:
        logger.warning("health: broker unreachable: %s", exc)
        return CheckResult(ok=False, detail=type(exc).__name__)
    return CheckResult(ok=True, detail=str(transport))
