from typing import Any

from django.contrib.auth.forms import AuthenticationForm, SetPasswordForm
from unfold.widgets import BASE_INPUT_CLASSES


class PortalAuthenticationForm(AuthenticationForm):
    """The portal's sign-in form (managers too, not only staff), with the admin's input style."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.widget.attrs["class"] = " ".join(BASE_INPUT_CLASSES)


class PortalSetPasswordForm(SetPasswordForm):  # type: ignore[type-arg]
    """Choosing a password from an invitation's one-time link, with the admin's input style."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.widget.attrs["class"] = " ".join(BASE_INPUT_CLASSES)
