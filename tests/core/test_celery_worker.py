"""Delivery guarantees with a real worker process on a real Redis broker."""

import time
import uuid

import pytest
import redis
from django.db import transaction

from tests.support import probe_tasks
from tests.support.services import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.postgres]


def counts(url: str, key: str) -> tuple[int, int]:
    client = redis.Redis.from_url(url)
    return int(client.get(f"{key}:started") or 0), int(client.get(f"{key}:done") or 0)


def test_a_task_queued_on_commit_runs_exactly_once_and_never_for_a_rolled_back_transaction(
    start_worker, celery_on_redis
):
    start_worker(include=["tests.support.probe_tasks"])
    committed, rolled_back = f"c-{uuid.uuid4()}", f"r-{uuid.uuid4()}"
    per_queue = {queue: f"q-{queue}-{uuid.uuid4()}" for queue in ("default", "webhooks", "kommo")}

    with pytest.raises(RuntimeError), transaction.atomic():
        transaction.on_commit(lambda: probe_tasks.record.delay(rolled_back))
        raise RuntimeError("the request failed")
    with transaction.atomic():
        transaction.on_commit(lambda: probe_tasks.record.delay(committed))
        for queue, key in per_queue.items():
            transaction.on_commit(lambda q=queue, k=key: probe_tasks.record.apply_async((k,), queue=q))
        assert counts(celery_on_redis, committed) == (0, 0)  # nothing is sent before the commit

    every = [committed, *per_queue.values()]
    wait_for(
        lambda: all(counts(celery_on_redis, k)[1] for k in every), timeout=20, message="the tasks to run"
    )
    time.sleep(3)  # longer than the visibility timeout: an unacknowledged task would come back by now
    for key in every:  # once each: a queue's routing never copies a task into another queue
        assert counts(celery_on_redis, key) == (1, 1), key
    assert counts(celery_on_redis, rolled_back) == (0, 0)


def test_a_task_is_not_lost_when_its_worker_is_killed_before_acknowledging(start_worker, celery_on_redis):
    key = f"k-{uuid.uuid4()}"
    first = start_worker(include=["tests.support.probe_tasks"])
    with transaction.atomic():
        transaction.on_commit(lambda: probe_tasks.record.delay(key, hang_first_run=60))
    wait_for(lambda: counts(celery_on_redis, key)[0] == 1, timeout=20, message="the task to start")

    first.kill()  # SIGKILL to the whole worker while the task runs: no ack, no cleanup
    assert counts(celery_on_redis, key) == (1, 0)
    start_worker(include=["tests.support.probe_tasks"])

    wait_for(lambda: counts(celery_on_redis, key)[1] == 1, timeout=30, message="the task to be redelivered")
    assert counts(celery_on_redis, key) == (2, 1)
