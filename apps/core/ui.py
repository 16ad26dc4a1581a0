"""One look for the admin and the portal's pages (docs/ui.md): the admin sidebar, grouped by job and built
per request from what the user may view, and the theme and navigation the portal's ``base.html`` needs.

Models are named by their admin URL and permission strings, so this module imports no app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse

# (group title, [(label, material symbol, "app_label.model")]) — in the order sales ops work.
SIDEBAR_GROUPS: list[tuple[str, list[tuple[str, str, str]]]] = [
    (
        "Kommo accounts & sync",
        [
            ("Accounts", "link", "kommo.kommoaccount"),
            ("Sync state", "sync", "kommo.syncstate"),
            ("Deals", "work", "kommo.lead"),
            ("Stage changes", "timeline", "kommo.stagechange"),
            ("Contacts", "person", "kommo.contact"),
            ("Companies", "apartment", "kommo.company"),
            ("Catalog elements", "inventory_2", "kommo.catalogelement"),
            ("Catalogs", "category", "kommo.catalog"),
            ("Pipelines", "view_kanban", "kommo.pipeline"),
            ("Stages", "view_column", "kommo.status"),
            ("Kommo users", "badge", "kommo.kommouser"),
            ("Custom fields", "tune", "kommo.customfield"),
        ],
    ),
    (
        "Stakeholders & roles",
        [
            ("Roles", "assignment_ind", "stakeholders.role"),
            ("Field mappings", "swap_horiz", "stakeholders.fieldmapping"),
            ("Stakeholders", "groups", "stakeholders.stakeholder"),
            ("Stakeholder history", "history", "stakeholders.stakeholderevent"),
        ],
    ),
    (
        "Gates",
        [
            ("Gate rules", "rule", "gates.gaterule"),
            ("Gate decisions", "gavel", "gates.gatedecision"),
        ],
    ),
    (
        "Stage time limits",
        [
            ("Stage limits", "timer", "escalations.stagelimit"),
            ("Heads of sales", "supervisor_account", "escalations.headofsales"),
            ("Escalations", "notification_important", "escalations.escalation"),
        ],
    ),
    (
        "Intake",
        [
            ("Intake sources", "input", "intake.intakesource"),
            ("Submissions", "inbox", "intake.intakesubmission"),
        ],
    ),
    (
        "Webhooks & outbound",
        [
            ("Webhook events", "webhook", "kommo.webhookevent"),
            ("Outbound changes", "outbox", "kommo.outboundchange"),
        ],
    ),
    (
        "Reports",
        [
            ("Stage norms", "speed", "reports.stagenorm"),
            ("Forecast categories", "stacked_bar_chart", "reports.forecastcategory"),
            ("Coverage snapshots", "photo_camera", "reports.coveragesnapshot"),
            ("Export clients", "key", "reports.exportclient"),
        ],
    ),
    (
        "Users & access",
        [
            ("Users", "person", "users.user"),
            ("Groups", "group", "auth.group"),
            ("Login failures", "lock", "axes.accessattempt"),
            ("Lock-outs", "lock_person", "axes.accessfailurelog"),
            ("Logins", "login", "axes.accesslog"),
        ],
    ),
]

# The portal's own pages: (label, material symbol, URL name, who sees it).
PORTAL_PAGES: list[tuple[str, str, str, str]] = [
    ("Deals", "handshake", "stakeholders:deal_list", "everyone"),
    ("Reports", "monitoring", "reports:index", "reports"),
]
REPORT_GROUPS = ("Head of sales", "Sales ops")
# The job named under the site's title, in this order when a person holds several.
JOB_GROUPS = ("Sales ops", "Head of sales", "Manager")


def _url(name: str, *args: Any) -> str | None:
    """The URL, or None while the route does not exist (a page another app adds later)."""
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


def can_see_reports(user: Any) -> bool:
    """Reports are for the head of sales and sales ops (and superusers)."""
    if not user.is_authenticated:
        return False
    if user.is_superuser or user.has_perm("reports.view_reports"):
        return True
    return bool(user.groups.filter(name__in=REPORT_GROUPS).exists())


def favicon_url(request: HttpRequest) -> str:
    return static("core/favicon.svg")


def admin_subheader(request: HttpRequest) -> str:
    """unfold's SITE_SUBHEADER: the signed-in person's job (their group), so that the head of sales is not
    told they are in sales ops."""
    user = request.user
    if user.is_authenticated:
        groups = set(user.groups.values_list("name", flat=True))
        for job in JOB_GROUPS:
            if job in groups:
                return job
        if user.is_superuser:
            return "Administrator"
    return ""


def admin_sidebar(request: HttpRequest) -> list[dict[str, Any]]:
    """unfold's SIDEBAR["navigation"]: the portal pages, then one group per job with the models the user
    may view; empty groups and routes that do not exist are left out."""
    user = request.user
    portal = []
    for label, icon, name, audience in PORTAL_PAGES:
        link = _url(name)
        if link and (audience == "everyone" or can_see_reports(user)):
            portal.append({"title": label, "icon": icon, "link": link})
    groups: list[dict[str, Any]] = []
    if portal:
        groups.append({"title": "Portal", "separator": False, "items": portal})
    for title, models in SIDEBAR_GROUPS:
        items = []
        for label, icon, model in models:
            app_label, model_name = model.split(".")
            link = _url(f"admin:{app_label}_{model_name}_changelist")
            if link and user.has_perm(f"{app_label}.view_{model_name}"):
                items.append({"title": label, "icon": icon, "link": link})
        if items:
            groups.append({"title": title, "separator": True, "collapsible": True, "items": items})
    return groups


@dataclass(frozen=True)
class NavLink:
    label: str
    url: str
    icon: str
    active: bool


def portal_nav(request: HttpRequest) -> list[NavLink]:
    """The links of the portal's top bar for this user: Deals, Reports, Admin."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return []
    links = []
    for label, icon, name, audience in PORTAL_PAGES:
        url = _url(name)
        if url and (audience == "everyone" or can_see_reports(user)):
            links.append(NavLink(label, url, icon, request.path.startswith(url)))
    if user.is_staff:
        url = reverse("admin:index")
        links.append(NavLink("Admin", url, "settings", request.path.startswith(url)))
    return links


def portal_theme(request: HttpRequest) -> dict[str, Any]:
    """Context processor: what unfold's skeleton needs outside the admin (its colours are CSS variables set
    from the UNFOLD settings), and the portal's navigation. The admin's own context overrides it."""
    from django.contrib import admin

    site: Any = admin.site  # unfold's site once its app is ready
    return {
        "colors": site._get_colors("COLORS", request),
        "border_radius": site._get_config("BORDER_RADIUS", request),
        "site_title": site._get_config("SITE_TITLE", request),
        "site_favicons": site._get_favicons("SITE_FAVICONS", request),
        "portal_nav": lambda: portal_nav(request),
    }
