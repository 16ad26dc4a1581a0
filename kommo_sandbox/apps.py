from django.apps import AppConfig


class KommoSandboxConfig(AppConfig):
    """A Kommo emulator served as its own process (``python -m kommo_sandbox`` or
    ``manage.py kommo_sandbox``), installed in the local and test settings only; it has no models."""

    name = "kommo_sandbox"
    label = "kommo_sandbox"
    verbose_name = "Kommo sandbox"
