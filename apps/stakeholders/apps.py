from django.apps import AppConfig


class StakeholdersConfig(AppConfig):
    name = "apps.stakeholders"
    label = "stakeholders"
    verbose_name = "Stakeholders"
