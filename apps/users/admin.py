from axes import admin as axes_admin
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group
from django.db.models import QuerySet
from django.http import HttpRequest
from unfold.admin import ModelAdmin
from unfold.forms import AdminPasswordChangeForm, UserChangeForm, UserCreationForm

from apps.users.models import User

admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(BaseGroupAdmin, ModelAdmin):  # type: ignore[misc]
    pass


@admin.register(User)
class UserAdmin(BaseUserAdmin, ModelAdmin):  # type: ignore[misc]
    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = AdminPasswordChangeForm
    list_display = ("username", "email", "first_name", "last_name", "job", "kommo_user_id", "is_staff")
    # One sign for "nothing here" in every column, the one the portal's pages use (Django's default is "-").
    list_filter = ("is_staff", "is_superuser", "is_active", "groups")
    fieldsets = (*(BaseUserAdmin.fieldsets or ()), ("Kommo", {"fields": ("kommo_user_id",)}))

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        users: QuerySet[User] = super().get_queryset(request)
        return users.prefetch_related("groups")

    @admin.display(description="job")
    def job(self, user: User) -> str:
        """The person's groups (Sales ops, Head of sales, Manager), read with the page's users."""
        return ", ".join(sorted(group.name for group in user.groups.all())) or self.get_empty_value_display()

    def get_readonly_fields(self, request: HttpRequest, obj: User | None = None) -> tuple[str, ...]:
        """Only a superuser makes superusers or hands out single permissions; sales ops use the groups."""
        fields = tuple(super().get_readonly_fields(request, obj))
        if request.user.is_superuser:
            return fields
        return (*fields, "is_superuser", "user_permissions")

    def has_change_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        """Nobody but a superuser changes a superuser (their password included)."""
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)


# Sign-in lock-outs (django-axes): sales ops see who is locked out and lift a lock by deleting its row.
for _model in (AccessAttempt, AccessLog, AccessFailureLog):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


@admin.register(AccessAttempt)
class AccessAttemptAdmin(axes_admin.AccessAttemptAdmin, ModelAdmin):  # type: ignore[misc]
    """Failed sign-ins per user name and address; a row at the limit is a lock (``status``)."""

    actions = ["lift_locks"]

    @admin.action(
        description="Lift the selected locks (the person may sign in again)", permissions=["delete"]
    )
    def lift_locks(self, request: HttpRequest, queryset: QuerySet[AccessAttempt]) -> None:
        pairs = [
            f"{username} from {address}"
            for username, address in queryset.values_list("username", "ip_address")
        ]
        queryset.delete()
        self.message_user(request, f"Lock lifted: {', '.join(pairs)}." if pairs else "Nothing to lift.")


@admin.register(AccessFailureLog)
class AccessFailureLogAdmin(axes_admin.AccessFailureLogAdmin, ModelAdmin):  # type: ignore[misc]
    pass


@admin.register(AccessLog)
class AccessLogAdmin(axes_admin.AccessLogAdmin, ModelAdmin):  # type: ignore[misc]
    pass
