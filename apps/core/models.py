from django.db import models


class TimeStampedModel(models.Model):
    """Local bookkeeping times of a row (not Kommo's own timestamps, which mirror models keep separately)."""

    created = models.DateTimeField(auto_now_add=True, db_index=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
