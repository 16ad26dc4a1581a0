from apps.kommo.admin import account  # noqa: F401  (registers KommoAccount)
