"""A task that counts its runs in Redis, for the tests that prove delivery guarantees with a real worker.

The first run of a key can be told to hang, so that a test can kill the worker while the task is running,
before it has been acknowledged.
"""

import time

import redis
from celery import shared_task
from django.conf import settings


@shared_task(name="tests.probe.record")
def record(key: str, hang_first_run: float = 0.0) -> None:
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    started = client.incr(f"{key}:started")
    if started == 1 and hang_first_run:
        time.sleep(hang_first_run)
    client.incr(f"{key}:done")
