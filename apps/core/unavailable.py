"""A page whose database does not answer (the server down, restarting, refusing connections, or a statement
cancelled by its timeout) is answered 503 with a few words and ``Retry-After``, instead of a bare 500 that
reads as a bug in the portal: the next try may well succeed. The webhook and intake views answer their own
503s (apps/core/timeouts.py); this is for every other page, the reports and the admin among them.

Only connection-level errors (``OperationalError``, ``InterfaceError``): an ``IntegrityError`` or a
``ProgrammingError`` is the portal's fault and stays a 500."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.contrib.auth.models import AnonymousUser
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 30
MESSAGE = "The database does not answer. Try again in a minute."


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning("database unavailable for %s %s: %s", request.method, request.path, exception)
        response: HttpResponse
        if request.path.startswith(("/api/", "/webhooks/")):
            response = JsonResponse({"detail": MESSAGE}, status=503)
        else:
            # Nothing on this page may touch the database again: the person is not looked up (the admin's
            # theme asks who it is), the page names no one and no navigation.
            request.user = AnonymousUser()
            response = render(request, "503.html", {"message": MESSAGE}, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
