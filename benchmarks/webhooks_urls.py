"""The portal's urls plus the webhook benchmark's baselines, served the same way: a bare Django view, and
the floor of store-before-acknowledge (a plain view doing only the one committed INSERT of the row the
webhook URL stores)."""

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from apps.kommo.webhooks.intake import _insert_event, stored_headers
from config.urls import urlpatterns as portal_urls


@csrf_exempt
def bare(request: HttpRequest) -> HttpResponse:
    """Answers 200, reading, storing and queuing nothing."""
    return HttpResponse(b"ok", content_type="text/plain")


@csrf_exempt
def floor(request: HttpRequest, account_id: int) -> HttpResponse:
    """Stores the delivery as the webhook URL does — the same row, by the same one INSERT, committed —
    and does nothing else: no token lookup, no size checks, no parsing, no task. What any
    store-before-acknowledge endpoint costs at least. Its headers are read as the webhook URL reads them
    (one pass over ``request.META``), so that the floor does not pay for building Django's
    ``request.headers`` where the webhook does not."""
    headers = stored_headers(request.META)
    _insert_event(
        {
            "account_id": account_id,
            "body": request.body,
            "content_type": request.META.get("CONTENT_TYPE", ""),
            "headers": headers,
            "remote_addr": request.META.get("REMOTE_ADDR"),
            "request_id": headers.get("x-amocrm-requestid", ""),
            "kind": "general",
            "events": "leads[status]",
            "status": "received",
            "attempts": 0,
            "error": "",
            "traceback": "",
            "received_at": timezone.now(),
            "claimed_at": None,
            "heartbeat_at": None,
            "retry_at": None,
            "processed_at": None,
        }
    )
    return HttpResponse(b"ok", content_type="text/plain")


urlpatterns = [*portal_urls, path("bench/bare/", bare), path("bench/floor/<int:account_id>/", floor)]
