"""gunicorn's configuration for every deployment of the portal (Dockerfile, docker-compose, benchmarks).

Threaded workers: a request mostly waits for PostgreSQL or Redis (the webhook endpoint stores a row and
answers), so threads let one process serve others while it waits, where a sync worker would sit idle.
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count()))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# Kommo gives up on a webhook after 2 seconds; nothing the portal serves should take longer than this.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
keepalive = 5
max_requests = 10_000  # recycle workers now and then
max_requests_jitter = 1_000
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
