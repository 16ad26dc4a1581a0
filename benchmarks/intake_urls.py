"""The portal's urls plus the baseline of the intake benchmark: a bare view with the same key check."""

from django.urls import path
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.intake.views import IntakeAPIView
from config.urls import urlpatterns as portal_urls


class BaselineView(IntakeAPIView):
    """Authenticates the intake key and answers 202, storing and queuing nothing."""

    def post(self, request: Request) -> Response:
        return Response({"id": 0}, status=status.HTTP_202_ACCEPTED)


urlpatterns = [*portal_urls, path("bench/baseline", BaselineView.as_view())]
