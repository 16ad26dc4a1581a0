"""Markers that several test modules share."""

from __future__ import annotations

import pytest

# The real servers a test talks to: PostgreSQL, Redis, a Celery worker process and the Kommo sandbox (each
# started by the fixtures; under CI=true a missing one fails the test instead of skipping it).
REAL_SERVERS = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker, pytest.mark.sandbox]

# An end-to-end module: the real servers, and the test database committed so that the worker reads what
# the test wrote, the migrations' rows restored after each test.
END_TO_END = [pytest.mark.django_db(transaction=True, serialized_rollback=True), *REAL_SERVERS]
