"""Settings of the webhook benchmark's server: the test settings (no debug), persistent database
connections as in production, and a URLconf that adds the bare baseline view."""

from config.settings.test import *  # noqa: F403
from config.settings.test import DATABASES

ROOT_URLCONF = "benchmarks.webhooks_urls"
DATABASES["default"]["CONN_MAX_AGE"] = 60
