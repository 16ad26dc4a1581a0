"""Developer machines and ``make run``: everything works with no environment at all."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "local-development-only-not-secret")
os.environ.setdefault("DJANGO_DEBUG", "true")
# A fixed development key so tokens stored by `make run` stay readable between runs; never use in production.
os.environ.setdefault("KOMMO_TOKEN_ENCRYPTION_KEY", "bG9jYWwtZGV2ZWxvcG1lbnQta2V5LW5vdC1zZWNyZXQ=")

from config.settings.base import *  # noqa: F403
from config.settings.base import INSTALLED_APPS, RUN_DIR, env

# The Kommo sandbox's management command (`manage.py kommo_sandbox`): a development tool, not in production.
INSTALLED_APPS = [*INSTALLED_APPS, "kommo_sandbox"]

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
RUN_DIR.mkdir(exist_ok=True)
if not REDIS_URL:  # noqa: F405  the embedded broker keeps its messages in folders that must exist
    for folder in ("queue", "processed", "control"):
        (RUN_DIR / "broker" / folder).mkdir(parents=True, exist_ok=True)
