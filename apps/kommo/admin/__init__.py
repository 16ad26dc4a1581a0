from apps.kommo.admin import account, mirror, outbound, people, webhooks  # noqa: F401  (each module registers its models)
