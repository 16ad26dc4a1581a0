"""Settings of the intake benchmark's server: the benchmarks' base and a URLconf with the baseline view."""

from benchmarks.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.intake_urls"
