"""Settings of the webhook benchmark's server: the benchmarks' base and a URLconf with the bare view."""

from benchmarks.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.webhooks_urls"
