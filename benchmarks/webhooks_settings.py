"""Settings of the webhook benchmark's server: the benchmarks' base (the request paths' bounds as in
production) and a URLconf with the bare view and the floor."""

from benchmarks.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.webhooks_urls"
