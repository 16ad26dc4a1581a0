from django.apps import AppConfig


class KommoConfig(AppConfig):
    name = "apps.kommo"
    label = "kommo"
    verbose_name = "Kommo"

    def ready(self) -> None:
        from apps.kommo import receivers  # noqa: F401  (connects the receivers)
