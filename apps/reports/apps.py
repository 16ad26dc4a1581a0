from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "apps.reports"
    label = "reports"
    verbose_name = "Reports"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created
        from django.db.models.signals import post_migrate, pre_migrate

        from apps.reports.export.sql import bi_after_migrate, bi_before_migrate
        from apps.reports.pages import pages_discover
        from apps.reports.sql import sqlite_functions_install

        connection_created.connect(sqlite_functions_install, dispatch_uid="reports_sqlite_functions")
        pages_discover()
        from apps.reports.deal_list import STUCK_FILTER, STUCK_FLAGS
        from apps.stakeholders.panels import deal_list_filter_register, deal_list_flags_register

        deal_list_filter_register(STUCK_FILTER)
        deal_list_flags_register(STUCK_FLAGS)
        pre_migrate.connect(bi_before_migrate, sender=self, dispatch_uid="reports_bi_before_migrate")
        post_migrate.connect(bi_after_migrate, sender=self, dispatch_uid="reports_bi_after_migrate")
