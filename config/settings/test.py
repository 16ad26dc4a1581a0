"""The test suite. The database comes from DATABASE_URL (the test fixtures point it at a throwaway
PostgreSQL server when one can be started); Celery uses an in-memory broker unless a test starts a real
worker against a real Redis."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-not-secret")
os.environ.setdefault("KOMMO_TOKEN_ENCRYPTION_KEY", "dGVzdC1vbmx5LWtleS1ub3Qtc2VjcmV0LTAwMDAwMDA=")
os.environ.setdefault("REDIS_URL", "")

from config.settings.base import *  # noqa: F403
from config.settings.base import BASE_DIR, INSTALLED_APPS, LOG_FILTERS, apply_postgresql_options, env

INSTALLED_APPS = [*INSTALLED_APPS, "kommo_sandbox"]  # its management command; production does without it

# Each pytest-xdist worker (and the worker processes it starts, which inherit its environment) gets its own
# folder: the file-backed rate limiter keeps one file per account id, and every worker's database numbers
# its accounts from 1.
if os.environ.get("PYTEST_XDIST_WORKER"):
    RUN_DIR = BASE_DIR / ".run" / f"test-{os.environ['PYTEST_XDIST_WORKER']}"

DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DATABASES = {"default": env.db("DATABASE_URL", default="sqlite:///:memory:")}
apply_postgresql_options(DATABASES["default"])
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Off: a test that posts through the API and then processes in the same thread would keep the request
# path's timeout on its connection, and a test's request may run its tasks inline within the request's
# database budget. The tests of the timeout and the budget turn them on.
DATABASE_REQUEST_STATEMENT_TIMEOUT_MS = env.int("DATABASE_REQUEST_STATEMENT_TIMEOUT_MS", default=0)
DATABASE_REQUEST_BUDGET_MS = env.int("DATABASE_REQUEST_BUDGET_MS", default=0)
# Off as well: the hold is the process's memory, which would carry one test's frozen database into the next.
DATABASE_REQUEST_FAST_FAIL_MS = env.int("DATABASE_REQUEST_FAST_FAIL_MS", default=0)
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="memory://")
CELERY_BROKER_TRANSPORT = None  # the URL's own (the zero-setup mode's file-system transport is for make run)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)}
CELERY_BEAT_SCHEDULE_FILENAME = str(BASE_DIR / ".run" / "test-celerybeat-schedule")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": LOG_FILTERS,
    "loggers": {"django.request": {"filters": ["mask_webhook_token"]}},
}
