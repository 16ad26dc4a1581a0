from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "apps.reports"
    label = "reports"
    verbose_name = "Reports"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from apps.reports.pages import pages_discover
        from apps.reports.sql import sqlite_functions_install

        connection_created.connect(sqlite_functions_install, dispatch_uid="reports_sqlite_functions")
        pages_discover()
