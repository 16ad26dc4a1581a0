from django.apps import AppConfig


class FlowsConfig(AppConfig):
    name = "apps.flows"
    label = "flows"
    verbose_name = "Data paths"

    def ready(self) -> None:
        from apps.flows.gates import gates_on_stage_changed
        from apps.kommo.signals import stage_changed

        stage_changed.connect(gates_on_stage_changed, dispatch_uid="gates_on_stage_changed")
