from django.apps import AppConfig


class EscalationsConfig(AppConfig):
    name = "apps.escalations"
    label = "escalations"
    verbose_name = "Stage limits & escalations"

    def ready(self) -> None:
        from apps.escalations.panels import escalations_deal_panel
        from apps.stakeholders.panels import deal_panel_register

        deal_panel_register(escalations_deal_panel)
