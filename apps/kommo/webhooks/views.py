"""The endpoint Kommo posts account webhooks and Digital Pipeline hooks to."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from apps.kommo.webhooks.intake import webhook_account_for_token, webhook_event_record

logger = logging.getLogger(__name__)


@csrf_exempt
def kommo_webhook(request: HttpRequest, token: str) -> HttpResponse:
    """``POST /webhooks/kommo/<token>/``: store the delivery as received, answer 200 at once.

    A plain function view: the token in the path is the credential (Kommo signs nothing), there is
    nothing to authenticate, negotiate or parse. Neither DRF's ``APIView`` (its dispatch cost about a
    quarter of what the request spent beyond its one INSERT) nor Django's class-based ``View``, whose
    ``method_decorator(csrf_exempt)`` wrapped the bound method anew on every request (docs/webhooks.md).
    The body is read raw, at most ``KOMMO_WEBHOOK_MAX_BODY_BYTES`` of it. Another method is answered 405
    in JSON, as the portal's API answers it.
    """
    if request.method != "POST":
        return JsonResponse(
            {"detail": f'Method "{request.method}" not allowed.'}, status=405, headers={"Allow": "POST"}
        )
    try:
        return _receive(request, token)
    except DatabaseError as exc:
        # Nothing was stored (the database is down, or stuck past the request's statement timeout):
        # a 503 at once, which Kommo's ladder retries, rather than an answer after its 2 seconds.
        logger.warning("webhook not stored, answered 503: %s: %s", type(exc).__name__, exc)
        return HttpResponse(status=503, headers={"Retry-After": "60"})


def _declared_length(request: HttpRequest) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None


def _receive(request: HttpRequest, token: str) -> HttpResponse:
    account = webhook_account_for_token(token)
    if account is None:
        return HttpResponse(status=404)
    limit = int(settings.KOMMO_WEBHOOK_MAX_BODY_BYTES)
    declared = _declared_length(request)
    if declared is None or declared > limit:
        return HttpResponse(status=413)
    if request.META.get("CONTENT_LENGTH"):
        body = request.read(limit + 1)  # bounded by Content-Length as well
    elif request.META.get("wsgi.input_terminated"):
        # No Content-Length (a chunked body): the server (gunicorn) ends the input where the body ends.
        body = request.META["wsgi.input"].read(limit + 1)
    elif "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        return HttpResponse(status=411)  # a server that cannot tell where a chunked body ends
    else:
        body = b""
    if len(body) > limit:
        return HttpResponse(status=413)
    webhook_event_record(account=account, body=body, meta=request.META)
    return HttpResponse(b"ok", content_type="text/plain")
