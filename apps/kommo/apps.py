from django.apps import AppConfig


class KommoConfig(AppConfig):
    name = "apps.kommo"
    label = "kommo"
    verbose_name = "Kommo"
