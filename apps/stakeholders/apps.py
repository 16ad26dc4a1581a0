from django.apps import AppConfig


class StakeholdersConfig(AppConfig):
    name = "apps.stakeholders"
    label = "stakeholders"
    verbose_name = "Stakeholders"

    def ready(self) -> None:
        from apps.kommo.signals import field_changes_seen, touches_seen
        from apps.stakeholders.receivers import (
            stakeholders_history_on_field_changes,
            stakeholders_touch_on_touches_seen,
        )

        field_changes_seen.connect(stakeholders_history_on_field_changes, dispatch_uid="stakeholders_history")
        touches_seen.connect(stakeholders_touch_on_touches_seen, dispatch_uid="stakeholders_touch")
