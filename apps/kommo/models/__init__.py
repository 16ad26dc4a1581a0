from apps.kommo.models.account import KommoAccount
from apps.kommo.models.mirror import (
    Catalog,
    CatalogElement,
    Company,
    Contact,
    ContactChannel,
    CustomField,
    CustomFieldEnum,
    KommoUser,
    Lead,
    LeadCatalogElement,
    LeadContact,
    Pipeline,
    StageChange,
    StageStay,
    Status,
    SyncState,
)
from apps.kommo.models.outbound import OutboundChange
from apps.kommo.models.webhooks import WebhookEvent

__all__ = [
    "Catalog",
    "CatalogElement",
    "Company",
    "Contact",
    "ContactChannel",
    "CustomField",
    "CustomFieldEnum",
    "KommoAccount",
    "KommoUser",
    "Lead",
    "LeadCatalogElement",
    "LeadContact",
    "OutboundChange",
    "Pipeline",
    "StageChange",
    "StageStay",
    "Status",
    "SyncState",
    "WebhookEvent",
]
