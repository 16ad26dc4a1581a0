from apps.kommo.admin import account, mirror, webhooks  # noqa: F401  (each module registers its models)
