import json
import multiprocessing
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

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


def production_setting(expression: str, env: dict[str, str]) -> str:
    """The value of ``expression`` (on ``settings``) in the production settings started with ``env``."""
    result = manage(
        "shell", "--no-imports", "-c", f"from django.conf import settings; print({expression})", env=env
    )
    assert result.returncode == 0, result.stderr[-500:]
    return result.stdout.strip()


def test_production_refuses_a_required_variable_that_is_only_spaces():
    for name in ("DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"):
        result = manage("check", env={**PRODUCTION_ENV, name: "   "})

        assert result.returncode != 0, name
        assert f"Set {name}: the portal does not start in production" in result.stderr, result.stderr[-500:]


def test_production_neither_installs_nor_imports_the_kommo_sandbox():
    expression = (
        "'kommo_sandbox' in settings.INSTALLED_APPS,"
        " any(name.startswith('kommo_sandbox') for name in __import__('sys').modules)"
    )

    assert production_setting(expression, PRODUCTION_ENV) == "False False"
    assert "kommo_sandbox" in settings.INSTALLED_APPS  # the tests' settings do, for its management command


def test_production_reads_the_allowed_hosts_as_a_comma_separated_list_ignoring_blanks():
    env = {**PRODUCTION_ENV, "DJANGO_ALLOWED_HOSTS": " portal.example.com, ,api.example.com ,"}

    assert production_setting("settings.ALLOWED_HOSTS", env) == "['portal.example.com', 'api.example.com']"


def test_production_runs_on_the_database_and_the_redis_of_the_environment():
    expression = (
        "settings.DATABASES['default']['ENGINE'], settings.DATABASES['default']['HOST'],"
        " settings.DATABASES['default']['CONN_MAX_AGE'], settings.DATABASES['default']['OPTIONS'],"
        " settings.DATABASE_REQUEST_BUDGET_MS, settings.CACHES['default']['LOCATION'],"
        " settings.CELERY_BROKER_URL, settings.DEBUG"
    )

    assert production_setting(expression, PRODUCTION_ENV) == (
        "apps.core.postgresql db.example.com 60 {'prepare_threshold': 5, 'connect_timeout': 2} 1500"
        " redis://redis.example.com:6379/0 redis://redis.example.com:6379/0 False"
    )


def test_postgresql_gets_the_budgeted_backend_and_the_options_of_the_environment_and_others_nothing(
    monkeypatch,
):
    from config.settings.base import apply_postgresql_options

    def options(engine: str) -> dict[str, object]:
        database: dict[str, object] = {"ENGINE": engine}
        apply_postgresql_options(database)
        return database

    monkeypatch.delenv("DATABASE_PREPARE_THRESHOLD", raising=False)
    monkeypatch.delenv("DATABASE_CONNECT_TIMEOUT", raising=False)
    assert options("django.db.backends.postgresql") == {
        "ENGINE": "apps.core.postgresql",
        "OPTIONS": {"prepare_threshold": 5, "connect_timeout": 2},
    }
    assert options("apps.core.postgresql")["ENGINE"] == "apps.core.postgresql"
    assert options("django.db.backends.sqlite3") == {"ENGINE": "django.db.backends.sqlite3"}
    monkeypatch.setenv("DATABASE_PREPARE_THRESHOLD", "2")
    monkeypatch.setenv("DATABASE_CONNECT_TIMEOUT", "4")
    assert options("django.db.backends.postgresql")["OPTIONS"] == {
        "prepare_threshold": 2,
        "connect_timeout": 4,
    }
    monkeypatch.setenv("DATABASE_PREPARE_THRESHOLD", "")  # off, as behind a transaction-mode pooler
    assert options("django.db.backends.postgresql")["OPTIONS"]["prepare_threshold"] is None


def test_postgresql_options_keep_the_options_already_set(monkeypatch):
    from config.settings.base import apply_postgresql_options

    monkeypatch.delenv("DATABASE_PREPARE_THRESHOLD", raising=False)
    monkeypatch.delenv("DATABASE_CONNECT_TIMEOUT", raising=False)
    database = {"ENGINE": "django.db.backends.postgresql", "OPTIONS": {"sslmode": "require"}}
    apply_postgresql_options(database)

    assert database["OPTIONS"] == {"sslmode": "require", "prepare_threshold": 5, "connect_timeout": 2}


def gunicorn_configuration(monkeypatch, **variables: str) -> dict[str, object]:
    """config/gunicorn.py as gunicorn reads it, with only ``variables`` of its own set."""
    for name in [name for name in os.environ if name.startswith("GUNICORN_")]:
        monkeypatch.delenv(name)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "config" / "gunicorn.py"))


def test_gunicorn_defaults_to_sync_workers_two_per_core_and_the_access_log_on_stdout(monkeypatch):
    config = gunicorn_configuration(monkeypatch)

    assert config["bind"] == "0.0.0.0:8000"
    assert config["workers"] == multiprocessing.cpu_count() * 2 + 1
    assert (config["worker_class"], config["threads"], config["timeout"]) == ("sync", 1, 30)
    assert config["accesslog"] == "-"


def test_gunicorn_takes_each_setting_from_its_variable_and_an_empty_one_means_the_default(monkeypatch):
    config = gunicorn_configuration(
        monkeypatch,
        GUNICORN_BIND="127.0.0.1:9000",
        GUNICORN_WORKERS="3",
        GUNICORN_WORKER_CLASS="gthread",
        GUNICORN_THREADS="",
        GUNICORN_TIMEOUT="",
    )

    assert (config["bind"], config["workers"], config["worker_class"]) == ("127.0.0.1:9000", 3, "gthread")
    assert (config["threads"], config["timeout"]) == (1, 30)


def test_an_empty_gunicorn_access_log_turns_it_off(monkeypatch):
    assert gunicorn_configuration(monkeypatch, GUNICORN_ACCESS_LOG="")["accesslog"] is None


def test_the_embedded_broker_keeps_every_folder_under_run_and_none_in_the_checkout(tmp_path):
    env = {"DJANGO_SETTINGS_MODULE": "config.settings.local"}
    code = "import json; from django.conf import settings as s; print(json.dumps(s.{}))"
    result = manage("shell", "--no-imports", "-c", code.format("CELERY_BROKER_TRANSPORT_OPTIONS"), env=env)
    options = json.loads(result.stdout)
    folders = {key: value for key, value in options.items() if key.endswith("_folder") or "folder_" in key}

    assert {"data_folder_in", "data_folder_out", "processed_folder", "control_folder"} <= folders.keys()
    for key, folder in folders.items():
        assert Path(folder).is_relative_to(ROOT / ".run"), key


def test_make_clean_removes_the_run_folder_and_a_broker_control_folder_left_by_older_runs():
    recipe = subprocess.run(["make", "-n", "clean"], cwd=ROOT, capture_output=True, text=True).stdout

    assert re.search(r"rm -rf .*\.run\b", recipe)
    assert re.search(r"rm -rf .*\bcontrol\b", recipe)


def test_production_serves_the_collected_static_files_itself(tmp_path, settings, client):
    """Production has no proxy in front of gunicorn for /static/: without this the admin and the portal's
    pages would render without their stylesheets."""
    from django.core.management import call_command

    middleware = production_setting("settings.MIDDLEWARE", PRODUCTION_ENV)
    assert (
        "'django.middleware.security.SecurityMiddleware', 'whitenoise.middleware.WhiteNoiseMiddleware'"
        in (middleware)
    )
    settings.MIDDLEWARE = [
        settings.MIDDLEWARE[0],
        "whitenoise.middleware.WhiteNoiseMiddleware",
        *settings.MIDDLEWARE[1:],
    ]
    settings.STATIC_ROOT = tmp_path
    call_command("collectstatic", "--no-input", verbosity=0)

    answer = client.get("/static/unfold/css/styles.css")

    assert answer.status_code == 200
    assert b"".join(answer.streaming_content).startswith(b"/*")
