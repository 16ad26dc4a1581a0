from django.apps import AppConfig


class StakeholdersConfig(AppConfig):
    name = "apps.stakeholders"
    label = "stakeholders"
    verbose_name = "Stakeholders"

    def ready(self) -> None:
        from apps.kommo.signals import mirror_changed
        from apps.stakeholders.receivers import stakeholders_rederive_on_mirror_change

        mirror_changed.connect(stakeholders_rederive_on_mirror_change, dispatch_uid="stakeholders_rederive")
