"""The base of the benchmarks' servers: the test settings (no debug) with persistent database connections,
as in production. Each benchmark's ``*_settings`` module adds its URLconf with its baseline view."""

from config.settings.test import *  # noqa: F403
from config.settings.test import DATABASES

DATABASES["default"]["CONN_MAX_AGE"] = 60
