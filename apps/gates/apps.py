from django.apps import AppConfig


class GatesConfig(AppConfig):
    name = "apps.gates"
    label = "gates"
    verbose_name = "Gates"

    def ready(self) -> None:
        from apps.gates.panels import gates_deal_panel
        from apps.gates.receivers import gates_on_stage_changed, gates_on_stage_changes_committed
        from apps.kommo.signals import stage_changed, stage_changes_committed
        from apps.stakeholders.panels import deal_panel_register

        stage_changed.connect(gates_on_stage_changed, dispatch_uid="gates_on_stage_changed")
        stage_changes_committed.connect(
            gates_on_stage_changes_committed, dispatch_uid="gates_on_stage_changes_committed"
        )
        deal_panel_register(gates_deal_panel)
