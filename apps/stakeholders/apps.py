from django.apps import AppConfig


class StakeholdersConfig(AppConfig):
    name = "apps.stakeholders"
    label = "stakeholders"
    verbose_name = "Stakeholders"

    def ready(self) -> None:
        from apps.kommo.signals import activity_seen, field_changes_seen, mirror_changed
        from apps.stakeholders.receivers import (
            stakeholders_history_on_field_changes,
            stakeholders_rederive_on_mirror_change,
            stakeholders_touch_on_activity,
        )

        mirror_changed.connect(stakeholders_rederive_on_mirror_change, dispatch_uid="stakeholders_rederive")
        activity_seen.connect(stakeholders_touch_on_activity, dispatch_uid="stakeholders_touch")
        field_changes_seen.connect(stakeholders_history_on_field_changes, dispatch_uid="stakeholders_history")
