import apps.kommo.admin.mirror  # noqa: F401  (registers the read-only mirror)
import apps.kommo.admin_webhooks  # registers WebhookEvent
from apps.kommo.admin import account  # noqa: F401  (registers KommoAccount)
