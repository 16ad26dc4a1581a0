from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from django.contrib import admin

        # "Nothing here" is one long dash in every admin list and form, not Django's "-" in most of them.
        admin.site.empty_value_display = "—"
