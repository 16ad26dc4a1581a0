"""The portal's urls plus the webhook benchmark's baseline: a bare Django view served the same way."""

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from config.urls import urlpatterns as portal_urls


@csrf_exempt
def bare(request: HttpRequest) -> HttpResponse:
    """Answers 200, reading, storing and queuing nothing."""
    return HttpResponse(b"ok", content_type="text/plain")


urlpatterns = [*portal_urls, path("bench/bare/", bare)]
