import apps.kommo.admin.mirror  # noqa: F401  (registers the read-only mirror)
from apps.kommo import admin_webhooks  # noqa: F401  (registers WebhookEvent)
from apps.kommo.admin import account  # noqa: F401  (registers KommoAccount)
