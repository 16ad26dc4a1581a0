"""Suite-wide fixtures: the database the suite runs on, and real Redis, PostgreSQL and Celery workers.

TEST_DATABASE chooses the database: ``postgres`` (a throwaway server started here; CI uses it), ``sqlite``
(in memory), or unset: PostgreSQL when it is installed, SQLite otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.services import (
    CeleryBeat,
    CeleryWorker,
    PostgresServer,
    RedisServer,
    in_ci,
    postgres_program,
    unavailable,
)

# The suite's shared Kommo sandbox fixtures (demo, fresh_demo, gated_portal…) and the broker of a test's own
# (own_redis), for every test directory.
pytest_plugins = ["tests.kommo.sandbox_support", "tests.support.broker"]


def suite_database() -> str:
    choice = os.environ.get("TEST_DATABASE", "").lower()
    if choice in {"postgres", "sqlite"}:
        return choice
    if in_ci():
        return "postgres"
    return "postgres" if postgres_program("initdb") else "sqlite"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    request: pytest.FixtureRequest, django_db_modify_db_settings_parallel_suffix: None
) -> None:
    """Points the default database at a throwaway PostgreSQL server when the suite runs on PostgreSQL."""
    if suite_database() != "postgres":
        return
    import environ
    from django.conf import settings
    from django.db import connections

    from config.settings.base import apply_postgresql_options

    server: PostgresServer = request.getfixturevalue("postgres_server")
    config = environ.Env.db_url_config(server.url)
    # Updated in place: Django's connection handler holds this very dict.
    settings.DATABASES["default"].update(
        {key: config[key] for key in ("ENGINE", "NAME", "USER", "HOST", "PORT")}
    )
    settings.DATABASES["default"]["PASSWORD"] = ""
    apply_postgresql_options(settings.DATABASES["default"])
    # A connection object made earlier still has the SQLite backend class: drop it so the next one is new.
    connections["default"].close()
    del connections["default"]


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """pytest-django's test database, with every other session on it ended before it is dropped: a live
    server's thread or a stopped worker process may still hold a connection, and PostgreSQL refuses to drop
    a database in use."""
    yield
    if suite_database() != "postgres":
        return
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(scope="session")
def live_server(django_db_setup: None, live_server: Any) -> Any:
    """pytest-django's live server, started only once the suite's database is in place: started earlier,
    its thread would keep the in-memory SQLite connection that the PostgreSQL settings replace."""
    return live_server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A transactional test ends by emptying every table, which also removes what the data migrations
    made (groups, default roles). Serialized rollback puts it back, so that every test starts from a freshly
    migrated database whatever ran before it.

    pytest-django decides which databases to serialize at set-up from the tests' ``django_db`` markers, and
    a marker's ``serialized_rollback`` wins over the ``django_db_serialized_rollback`` fixture: a fixture
    name alone is ignored when a marker exists. So every transactional test gets a marker of its own that
    says so (closest, so it wins over the module's). Without it, an xdist worker whose tests named it only as
    a fixture never serialized its database, and its first transactional test emptied it for the rest."""
    for item in items:
        names: list[str] = getattr(item, "fixturenames", [])
        marker = item.get_closest_marker("django_db")
        transactional = bool(marker and marker.kwargs.get("transaction")) or bool(
            {"transactional_db", "live_server"} & set(names)
        )
        if not transactional:
            continue
        if "django_db_serialized_rollback" not in names:
            names.append("django_db_serialized_rollback")
        kwargs = {**(marker.kwargs if marker else {}), "transaction": True, "serialized_rollback": True}
        item.add_marker(pytest.mark.django_db(**kwargs), append=False)
    # A test that crashes the session's PostgreSQL runs after all others: a test run after it in the same
    # process found the main thread holding a connection made before the crash (three browser tests
    # failed with "server closed the connection"), whatever the crashing test closed.
    items.sort(key=lambda item: item.get_closest_marker("crashes_postgres") is not None)
    # Under xdist (--dist loadfile) a module is one unit of work; the units are handed out largest first,
    # then in the order of their first test. A crashing test alone in its module is the last unit handed
    # out, so nothing runs after it on its worker (each worker has a PostgreSQL of its own).
    per_module: dict[str, list[bool]] = {}
    for item in items:
        per_module.setdefault(str(item.path), []).append(bool(item.get_closest_marker("crashes_postgres")))
    crowded = [path for path, crashes in per_module.items() if any(crashes) and len(crashes) > 1]
    if crowded:
        raise pytest.UsageError(f"a test marked crashes_postgres must be alone in its module: {crowded}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Django puts the migrations' content back when the *next* serialized transactional test starts, so
    any other test after a transactional one would find no groups, roles or content types. Under xdist a
    worker runs whole files, transactional tests among them, in any order: the content is put back right
    after each transactional test's flush instead (rows already there are only updated)."""
    yield
    marker = item.get_closest_marker("django_db")
    if nextitem is None or not (marker and marker.kwargs.get("serialized_rollback")):
        return  # the last test of the run: the session's database server is already stopped
    from django.db import connection
    from pytest_django.plugin import blocking_manager_key

    contents = getattr(connection, "_test_serialized_contents", None)
    if contents:
        with item.config.stash[blocking_manager_key].unblock():
            connection.creation.deserialize_db_from_string(contents)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres") and suite_database() != "postgres":
        unavailable("this test needs PostgreSQL (TEST_DATABASE=postgres)")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    import redis

    yield redis_server.url
    redis.Redis.from_url(redis_server.url).flushall()


@pytest.fixture
def celery_on_redis(redis_url: str) -> Iterator[str]:
    """This process sends tasks to the real Redis broker for the duration of the test."""
    from config.celery import app

    saved = app.conf.broker_url, app.conf.broker_transport_options
    app.conf.broker_url = redis_url
    app.conf.broker_transport_options = {"visibility_timeout": 2}
    _reset_producer_pools(app)
    yield redis_url
    app.conf.broker_url, app.conf.broker_transport_options = saved
    _reset_producer_pools(app)


def _reset_producer_pools(app) -> None:  # type: ignore[no-untyped-def]
    """Forget pooled broker connections so that the next task goes to the broker configured now."""
    import kombu.pools

    app._pool = None
    app.amqp._producer_pool = None
    kombu.pools.reset()


@pytest.fixture
def worker_database_url(transactional_db: None) -> str:
    """The URL of the test database, for processes outside this one (it needs committed data)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        unavailable("a worker process shares the test database only on PostgreSQL")
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


@pytest.fixture
def start_worker(celery_on_redis: str, worker_database_url: str) -> Iterator[Callable[..., CeleryWorker]]:
    """Starts real Celery worker processes on the test's Redis and database; all are stopped afterwards."""
    workers: list[CeleryWorker] = []

    def start(**kwargs: object) -> CeleryWorker:
        kwargs.setdefault("extra_env", {"CELERY_VISIBILITY_TIMEOUT": "2"})
        worker = CeleryWorker(broker_url=celery_on_redis, database_url=worker_database_url, **kwargs)  # type: ignore[arg-type]
        workers.append(worker)
        return worker.start()

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def start_beat(celery_on_redis: str, worker_database_url: str) -> Iterator[Callable[..., CeleryBeat]]:
    """Starts a real Celery beat process (the project's schedule) on the test's Redis and database."""
    beats: list[CeleryBeat] = []

    def start(**kwargs: object) -> CeleryBeat:
        beat = CeleryBeat(broker_url=celery_on_redis, database_url=worker_database_url, **kwargs)  # type: ignore[arg-type]
        beats.append(beat)
        return beat.start()

    yield start
    for beat in beats:
        beat.stop()
