import io
import os
import re
import subprocess
import sys

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from apps.core.management.commands.core_run import portal_processes, public_url_for, sandbox_process
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


def test_make_run_on_another_port_gives_the_sandbox_and_every_process_that_port_as_the_public_url(tmp_path):
    public_url = public_url_for(host="127.0.0.1", port=8420, environ={})
    sandbox = sandbox_process(host="127.0.0.1", port=8001, public_url=public_url, run_dir=tmp_path)

    assert public_url == "http://127.0.0.1:8420"
    assert (
        sandbox.argv[sandbox.argv.index("--redirect-uri") + 1]
        == "http://127.0.0.1:8420/kommo/oauth/callback/"
    )


def test_a_public_url_set_in_the_environment_wins_over_the_port():
    environ = {"KOMMO_PUBLIC_URL": "https://portal.example.com/"}

    assert public_url_for(host="127.0.0.1", port=8420, environ=environ) == "https://portal.example.com"


def test_kommo_connect_prints_the_webhook_url_on_the_public_url_it_is_started_with():
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "--no-imports",
            "-c",
            "from apps.kommo.models import KommoAccount; print(KommoAccount(webhook_token='t').webhook_url)",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "KOMMO_PUBLIC_URL": public_url_for(host="127.0.0.1", port=8420, environ={}),
        },
        capture_output=True,
        text=True,
    )

    assert result.stdout.strip() == "http://127.0.0.1:8420/webhooks/kommo/t/", result.stderr


def test_make_run_relays_a_setup_step_in_the_order_it_wrote_without_info_logs(monkeypatch):
    from apps.core.management.commands import core_run

    script = (
        "import logging, os, sys\n"
        "logging.basicConfig(level=os.environ['LOG_LEVEL'], format='LOG %(levelname)s %(message)s')\n"
        "print('first result')\n"
        "logging.getLogger('x').info('chatter')\n"
        "logging.getLogger('x').warning('something to see')\n"
        "print('second result')\n"
    )
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    monkeypatch.setattr(core_run, "manage", lambda *args: [sys.executable, "-c", script])
    runner = core_run.Command(stdout=io.StringIO())

    runner._step("kommo_sync")

    assert runner.stdout._out.getvalue().splitlines() == [
        "  setup | manage.py kommo_sync",
        "  setup | first result",
        "  setup | LOG WARNING something to see",
        "  setup | second result",
    ]
