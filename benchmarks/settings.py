"""The base of the benchmarks' servers: the test settings (no debug) with persistent database connections
and the request paths' database bounds as in production (config/settings/base.py; the tests turn them off),
so that the webhook and intake URLs are measured with their statement timeouts, their database deadline and
the fast-fail hold. Each benchmark's ``*_settings`` module adds its URLconf with its baseline view."""

from config.settings.test import *  # noqa: F403
from config.settings.test import DATABASES, env

DATABASES["default"]["CONN_MAX_AGE"] = 60
DATABASE_REQUEST_STATEMENT_TIMEOUT_MS = env.int("DATABASE_REQUEST_STATEMENT_TIMEOUT_MS", default=1000)
DATABASE_REQUEST_BUDGET_MS = env.int("DATABASE_REQUEST_BUDGET_MS", default=1500)
DATABASE_REQUEST_FAST_FAIL_MS = env.int("DATABASE_REQUEST_FAST_FAIL_MS", default=3000)
