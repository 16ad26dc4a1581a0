"""Where each person lands: ``/`` and the sign-in page send them to their work."""

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from apps.users.forms import PortalAuthenticationForm
from apps.users.models import User


def landing_url(user: Any) -> str:
    """Sales ops (and superusers) → the admin; the head of sales → the reports; managers and everyone else
    → their deals."""
    if user.is_staff and (user.is_superuser or user.in_group(User.Group.SALES_OPS)):
        return reverse("admin:index")
    if user.in_group(User.Group.HEAD_OF_SALES):
        return reverse("reports:index")
    return reverse("stakeholders:deal_list")


def home(request: HttpRequest) -> HttpResponseRedirect:
    if not request.user.is_authenticated:
        return HttpResponseRedirect(reverse("login"))
    return HttpResponseRedirect(landing_url(request.user))


def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin's sign-in page, where the admin sends whoever may not use it. Someone already signed in
    who has no admin (a manager) is sent to their work with a word why, rather than asked to sign in
    again on a page that does not say what is wrong."""
    if request.user.is_authenticated and not admin.site.has_permission(request):
        messages.info(request, "The admin is for sales ops and the head of sales; your work is here.")
        return HttpResponseRedirect(landing_url(request.user))
    response: HttpResponse = admin.site.login(request)
    return response


class LoginView(auth_views.LoginView):
    """Signs in anyone with a portal account and sends them where their work is (unless ``next`` says
    otherwise)."""

    authentication_form = PortalAuthenticationForm
    redirect_authenticated_user = True

    def get_default_redirect_url(self) -> str:
        return landing_url(self.request.user)
