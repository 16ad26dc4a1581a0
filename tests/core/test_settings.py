import os
import subprocess
import sys

from django.conf import settings

from tests.support.services import ROOT

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DJANGO_SECRET_KEY": "x" * 60 + "-production-like-secret-value",
    "DJANGO_ALLOWED_HOSTS": "portal.example.com",
    "DATABASE_URL": "postgres://portal:secret@db.example.com:5432/portal",
    "REDIS_URL": "redis://redis.example.com:6379/0",
    "KOMMO_TOKEN_ENCRYPTION_KEY": "a2V5LWZvci10ZXN0aW5nLXByb2R1Y3Rpb24tY2hlY2s=",
    "KOMMO_PUBLIC_URL": "https://portal.example.com",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "KOMMO_", "DATABASE_", "REDIS_"))
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True
    )


def test_celery_only_speaks_json_and_gives_tasks_back_when_a_worker_dies():
    assert settings.CELERY_ACCEPT_CONTENT == ["json"]
    assert settings.CELERY_TASK_SERIALIZER == "json"
    assert settings.CELERY_TASK_ACKS_LATE is True
    assert settings.CELERY_TASK_REJECT_ON_WORKER_LOST is True
    assert settings.CELERY_TASK_SOFT_TIME_LIMIT < settings.CELERY_TASK_TIME_LIMIT
    assert {q.name for q in settings.CELERY_TASK_QUEUES} == {"default", "webhooks", "kommo"}


def test_production_settings_pass_the_deployment_checks():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)

    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_each_required_variable():
    for name in PRODUCTION_ENV.keys() - {"DJANGO_SETTINGS_MODULE"}:
        env = {**PRODUCTION_ENV, name: ""}
        result = manage("check", env=env)

        assert result.returncode != 0, name
        assert name in result.stderr, (name, result.stderr[-500:])
