from django.apps import AppConfig


class FlowsConfig(AppConfig):
    name = "apps.flows"
    label = "flows"
    verbose_name = "Data paths"

    def ready(self) -> None:
        from apps.flows.sync import mirror_follow
        from apps.kommo.admin.follow import admin_follow_give

        # The admin's "Sync now" and resync write the mirror as the sync does: the sync's follow-up.
        admin_follow_give(mirror_follow)
