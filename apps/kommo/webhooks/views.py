"""The endpoint Kommo posts account webhooks and Digital Pipeline hooks to."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.kommo.webhooks.intake import webhook_account_for_token, webhook_event_record

logger = logging.getLogger(__name__)


def _declared_length(request: Request) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None


class _NoNegotiation(BaseContentNegotiation):
    """The endpoint answers a fixed text/plain body whatever Kommo accepts: nothing to negotiate."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return None

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class KommoWebhookView(APIView):
    """``POST /webhooks/kommo/<token>/``: store the delivery as received, answer 200 at once.

    No authentication class (the token in the path is the credential, and Kommo signs nothing) and no
    parser: the body is read raw, at most ``KOMMO_WEBHOOK_MAX_BODY_BYTES`` of it.
    """

    authentication_classes = ()
    permission_classes = (AllowAny,)
    parser_classes = ()
    throttle_classes = ()
    renderer_classes = (JSONRenderer,)  # only error answers from DRF itself are rendered
    content_negotiation_class = _NoNegotiation
    schema = None  # Kommo's endpoint, not part of the portal's published API

    def post(self, request: Request, token: str) -> HttpResponse:
        try:
            return self._receive(request, token)
        except DatabaseError as exc:
            # Nothing was stored (the database is down, or stuck past the request's statement timeout):
            # a 503 at once, which Kommo's ladder retries, rather than an answer after its 2 seconds.
            logger.warning("webhook not stored, answered 503: %s: %s", type(exc).__name__, exc)
            return HttpResponse(status=503, headers={"Retry-After": "60"})

    def _receive(self, request: Request, token: str) -> HttpResponse:
        account = webhook_account_for_token(token)
        if account is None:
            return HttpResponse(status=404)
        limit = int(settings.KOMMO_WEBHOOK_MAX_BODY_BYTES)
        declared = _declared_length(request)
        if declared is None or declared > limit:
            return HttpResponse(status=413)
        if request.META.get("CONTENT_LENGTH"):
            body = request._request.read(limit + 1)  # bounded by Content-Length as well
        elif request.META.get("wsgi.input_terminated"):
            # No Content-Length (a chunked body): the server (gunicorn) ends the input where the body ends.
            body = request.META["wsgi.input"].read(limit + 1)
        elif "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            return HttpResponse(status=411)  # a server that cannot tell where a chunked body ends
        else:
            body = b""
        if len(body) > limit:
            return HttpResponse(status=413)
        webhook_event_record(
            account=account,
            body=body,
            content_type=request.content_type or "",
            headers=request.headers,
            remote_addr=request.META.get("REMOTE_ADDR"),
        )
        return HttpResponse(b"ok", content_type="text/plain")
