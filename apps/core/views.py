from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from apps.core.health import broker_check, database_check


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Database and broker reachability: 200 when both answer, 503 otherwise (for load balancers)."""
    checks = {"database": database_check(), "broker": broker_check()}
    healthy = all(check.ok for check in checks.values())
    body = {
        "status": "ok" if healthy else "unavailable",
        "checks": {name: {"ok": check.ok, "detail": check.detail} for name, check in checks.items()},
    }
    return JsonResponse(body, status=200 if healthy else 503)
