"""Settings of the webhook benchmark's server: the benchmarks' base and a URLconf with the bare view, with the
request path's database bounds as in production (config/settings/base.py; the tests turn them off): the
webhook URL is measured with its statement timeouts, its database deadline and the fast-fail hold."""

from benchmarks.settings import *  # noqa: F403
from config.settings.base import env

ROOT_URLCONF = "benchmarks.webhooks_urls"
DATABASE_REQUEST_STATEMENT_TIMEOUT_MS = env.int("DATABASE_REQUEST_STATEMENT_TIMEOUT_MS", default=1000)
DATABASE_REQUEST_BUDGET_MS = env.int("DATABASE_REQUEST_BUDGET_MS", default=1500)
DATABASE_REQUEST_FAST_FAIL_MS = env.int("DATABASE_REQUEST_FAST_FAIL_MS", default=3000)
