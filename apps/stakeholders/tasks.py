from celery import shared_task

from apps.kommo.models import KommoAccount
from apps.kommo.provenance import MirrorSource, Provenance
from apps.stakeholders.services import stakeholders_derive_for_account


@shared_task
def stakeholders_derive_account(account_id: int) -> None:
    """Re-derive every deal of one account (its field mappings changed). What the mappings now read is
    what the sync mirrored: the changes are recorded as the sync's."""
    account = KommoAccount.objects.filter(pk=account_id).first()
    if account is not None:
        stakeholders_derive_for_account(account=account, provenance=Provenance(MirrorSource.SYNC))
