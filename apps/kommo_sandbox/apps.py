from django.apps import AppConfig


class KommoSandboxConfig(AppConfig):
    """A Kommo emulator served as its own process (``manage.py kommo_sandbox``); it has no models."""

    name = "apps.kommo_sandbox"
    label = "kommo_sandbox"
    verbose_name = "Kommo sandbox"
