import re

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from apps.core.management.commands.core_run import portal_processes
from tests.support.services import ROOT, CeleryWorker


@pytest.mark.django_db
def test_the_demo_admin_is_refused_outside_debug():
    with pytest.raises(CommandError, match="local development only"):
        call_command("core_demo_admin")

    assert not get_user_model().objects.filter(username="admin").exists()


@pytest.mark.django_db
def test_the_demo_admin_is_a_sales_ops_superuser_and_a_second_run_resets_its_password(settings, capsys):
    settings.DEBUG = True
    call_command("core_demo_admin")
    admin = get_user_model().objects.get(username="admin")
    admin.set_password("changed")
    admin.save()

    call_command("core_demo_admin")

    admin.refresh_from_db()
    assert admin.is_staff and admin.is_superuser
    assert admin.check_password("admin")
    assert list(admin.groups.values_list("name", flat=True)) == ["Sales ops"]
    out = capsys.readouterr().out
    assert "Created demo admin" in out and "Reset demo admin" in out


def test_every_worker_consumes_every_queue_the_settings_route_to():
    queues = {queue.name for queue in settings.CELERY_TASK_QUEUES}
    worker = next(proc for proc in portal_processes(host="127.0.0.1", port=8000) if proc.name == "worker")
    compose = (ROOT / "docker-compose.yml").read_text()
    compose_queues = re.search(r"celery -A config worker -Q (\S+)", compose)

    assert set(worker.argv[worker.argv.index("-Q") + 1].split(",")) == queues  # make run
    assert compose_queues is not None
    assert set(compose_queues.group(1).split(",")) == queues  # docker compose
    assert set(CeleryWorker.queues.split(",")) == queues  # the tests' real workers
