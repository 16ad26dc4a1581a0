from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A person who signs in to the portal: sales ops, the head of sales or a manager.

    ``kommo_user_id`` ties a manager to the Kommo user whose deals are theirs; it is the Kommo id, so the
    link survives a full resync of the mirror.
    """

    class Group(models.TextChoices):
        SALES_OPS = "Sales ops"
        HEAD_OF_SALES = "Head of sales"
        MANAGER = "Manager"

    kommo_user_id = models.PositiveBigIntegerField(
        null=True, blank=True, db_index=True, help_text="The Kommo user this person works as."
    )

    def in_group(self, *groups: "User.Group") -> bool:
        """Whether the person belongs to any of ``groups``."""
        return self.groups.filter(name__in=[group.value for group in groups]).exists()
