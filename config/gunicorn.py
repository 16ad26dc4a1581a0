"""gunicorn's configuration for every deployment of the portal (Dockerfile, docker-compose, benchmarks).

Sync workers: measured on the webhook benchmark (docs/webhooks.md), threaded workers did not raise the
webhook endpoint's throughput and gave plain pages a long tail under keep-alive load. Each environment
variable below overrides its setting.
"""

import multiprocessing
import os

from gunicorn.glogging import Logger

from apps.core import heartbeat
from apps.kommo.webhooks.logmask import MaskWebhookToken


def setting(name: str, default: str) -> str:
    """The variable's value; unset and empty both mean the default."""
    return os.environ.get(name) or default


bind = setting("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(setting("GUNICORN_WORKERS", str(multiprocessing.cpu_count() * 2 + 1)))
worker_class = setting("GUNICORN_WORKER_CLASS", "sync")
threads = int(setting("GUNICORN_THREADS", "1"))
# Kommo gives up on a webhook after 2 seconds; nothing the portal serves should take longer than this. The
# last resort: the webhook and intake requests keep to their database deadline (DATABASE_REQUEST_BUDGET_MS,
# apps/core/timeouts.py, which starts in config/wsgi.py) even when the database cannot answer, so a frozen
# database does not hold a worker until this timeout kills it; and after one missed it, a worker answers them
# at once for DATABASE_REQUEST_FAST_FAIL_MS, so that they do not queue behind each other. Every other request
# (the pages, the admin) keeps to DATABASE_PAGE_BUDGET_MS (15 s) for the database and KOMMO_PAGE_BUDGET_MS
# (12 s) for Kommo, which together must stay below this timeout: killed here, a worker sends no answer at
# all, where the deadlines send the 503 page or say that Kommo did not answer.
# A sync worker tells the arbiter it is alive only between requests, so a response still streaming after
# this timeout would be killed mid-stream (the BI export's CSV of a large account: a truncated file). The
# export's stream tells it per chunk instead (apps/core/heartbeat.py, given the worker's heartbeat by
# post_worker_init below): a stream that makes progress keeps its worker, a worker with no progress for this
# long (a query that never answers, a client that reads nothing) is killed as before. Not covered: the wait
# for COPY's first row, which for a large account's deals can approach this timeout (docs/reliability.md).
timeout = int(setting("GUNICORN_TIMEOUT", "30"))
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None


class MaskingLogger(Logger):
    """gunicorn's logger with the webhook URL's token masked in its access and error logs (the token is the
    only credential of a delivery; see apps/kommo/webhooks/logmask.py)."""

    def setup(self, cfg):  # type: ignore[no-untyped-def]
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            if not any(isinstance(f, MaskWebhookToken) for f in log.filters):
                log.addFilter(MaskWebhookToken())


logger_class = MaskingLogger


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    """The worker's heartbeat, for responses that stream longer than ``timeout`` (apps/core/heartbeat.py)."""
    heartbeat.install(worker.notify)
