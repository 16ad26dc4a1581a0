"""Settings of the intake benchmark's server: the test settings (no debug) plus a baseline view."""

from config.settings.test import *  # noqa: F403

ROOT_URLCONF = "benchmarks.intake_urls"
