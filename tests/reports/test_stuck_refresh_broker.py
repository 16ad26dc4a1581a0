"""The stuck-deals page with its task broker stopped (a real Redis, stopped and started again): the page
answers with the figures of the last refresh and says they are stale and that no refresh could be queued;
once Redis is back, the next viewer queues one."""

from __future__ import annotations

import json

import pytest
import redis

from apps.reports.export.stuck import stuck_states_refresh
from apps.reports.models import StuckRefresh
from tests.reports.desk import NOW, Desk, desk
from tests.reports.support import html_table, person
from tests.support.services import RedisServer

__all__ = ["desk"]
pytestmark = [pytest.mark.django_db, pytest.mark.redis]


def test_with_redis_stopped_the_stuck_page_answers_stale_and_the_next_viewer_queues_once_it_is_back(
    client,
    desk: Desk,
    own_redis: RedisServer,
) -> None:
    desk.deal("Northwind", price=80_000, open_task=False)
    stuck_states_refresh(account=desk.account, now=NOW)  # long ago: the states are stale now
    client.force_login(person("head", "Head of sales"))
    own_redis.stop()

    response = client.get("/reports/stuck/")

    assert response.status_code == 200
    html = response.content.decode()
    assert [row[0] for row in html_table(html, "deals")[1:]] == ["Northwind"]
    assert "As of 01 May 2025 12:00: these figures are stale" in html
    assert "a refresh could not be queued (the task queue did not answer); the next viewer tries" in html
    assert StuckRefresh.objects.get(account=desk.account).queued_at is None  # the claim was given back

    own_redis.start()  # the same port: the broker is back
    html = client.get("/reports/stuck/").content.decode()

    assert "these figures are stale" in html and "a refresh is queued; reload the page in a minute" in html
    [message] = redis.Redis.from_url(own_redis.url).lrange("default", 0, -1)
    assert json.loads(message)["headers"]["task"] == "apps.reports.tasks.stuck_refresh_account"
    assert json.loads(message)["headers"]["argsrepr"] == f"({desk.account.pk},)"
