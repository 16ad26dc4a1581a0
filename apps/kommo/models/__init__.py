from apps.kommo.models.account import KommoAccount

__all__ = ["KommoAccount"]
