from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "apps.reports"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate, pre_migrate

        from apps.reports.export.sql import bi_after_migrate, bi_before_migrate

        pre_migrate.connect(bi_before_migrate, sender=self, dispatch_uid="reports_bi_before_migrate")
        post_migrate.connect(bi_after_migrate, sender=self, dispatch_uid="reports_bi_after_migrate")
