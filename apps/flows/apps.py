from django.apps import AppConfig


class FlowsConfig(AppConfig):
    name = "apps.flows"
    label = "flows"
    verbose_name = "Data paths"

    def ready(self) -> None:
        from apps.flows.sync import field_changes_follow, mirror_follow
        from apps.kommo.admin.follow import admin_follow_give

        # The admin's "Sync now", resync and "Backfill history" write the mirror as the sync does: the
        # sync's follow-up, and the backfill's for the past field changes it reads.
        admin_follow_give(mirror_follow, field_changes=field_changes_follow)
