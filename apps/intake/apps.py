from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class IntakeConfig(AppConfig):
    name = "apps.intake"
    label = "intake"
    verbose_name = "Lead intake"

    def ready(self) -> None:
        from apps.intake.selectors import active_role_codes_forget
        from apps.stakeholders.models import Role

        post_save.connect(active_role_codes_forget, sender=Role, dispatch_uid="intake-role-codes-saved")
        post_delete.connect(active_role_codes_forget, sender=Role, dispatch_uid="intake-role-codes-deleted")
