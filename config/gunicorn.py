"""gunicorn's configuration for every deployment of the portal (Dockerfile, docker-compose, benchmarks).

Sync workers: measured on the webhook benchmark (docs/webhooks.md), threaded workers did not raise the
webhook endpoint's throughput and gave plain pages a long tail under keep-alive load. Each environment
variable below overrides its setting.
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2 + 1))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
# Kommo gives up on a webhook after 2 seconds; nothing the portal serves should take longer than this.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
