"""A Redis broker of a test's own, for the tests that stop the broker and start it again (registered for
every test directory by ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.services import RedisServer


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of the test's own (stopping it leaves the suite's alone); this process publishes to it."""
    from config.celery import app
    from tests.conftest import _reset_producer_pools

    server = RedisServer().start()
    saved = app.conf.broker_url, app.conf.broker_transport_options
    app.conf.broker_url = server.url
    app.conf.broker_transport_options = {"visibility_timeout": 2, "socket_connect_timeout": 1}
    _reset_producer_pools(app)
    yield server
    app.conf.broker_url, app.conf.broker_transport_options = saved
    _reset_producer_pools(app)
    server.stop()
