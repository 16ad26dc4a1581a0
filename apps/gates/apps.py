from django.apps import AppConfig


class GatesConfig(AppConfig):
    name = "apps.gates"
    label = "gates"
    verbose_name = "Gates"

    def ready(self) -> None:
        from apps.gates.panels import BLOCKED_FILTER, BLOCKED_FLAGS, gates_deal_panel, gates_moved_back_panel
        from apps.stakeholders.panels import (
            deal_list_filter_register,
            deal_list_flags_register,
            deal_panel_register,
        )

        deal_panel_register(gates_moved_back_panel)
        deal_panel_register(gates_deal_panel)
        deal_list_filter_register(BLOCKED_FILTER)
        deal_list_flags_register(BLOCKED_FLAGS)
