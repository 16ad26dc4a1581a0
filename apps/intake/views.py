"""The intake API: thin views over the services. Errors are RFC 7807 problem details."""

from __future__ import annotations

from typing import Any, cast

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.intake import docs, problems, services
from apps.intake.authentication import IntakeKeyAuthentication, IsIntakeSource
from apps.intake.models import IntakeSource
from apps.intake.parsers import IntakeJSONParser
from apps.intake.selectors import intake_submission_for_source
from apps.intake.serializers import IntakeLeadSerializer, IntakeSubmissionSerializer

IDEMPOTENCY_KEY_MAX = 255

PROBLEM = OpenApiResponse(description="Problem details (application/problem+json).")


class IntakeAPIView(APIView):
    authentication_classes = [IntakeKeyAuthentication]
    permission_classes = [IsIntakeSource]
    parser_classes = [IntakeJSONParser]

    def get_exception_handler(self):  # type: ignore[no-untyped-def]
        return problems.problem_exception_handler


class IntakeLeadCreateView(IntakeAPIView):
    @extend_schema(
        operation_id="intake_lead_submit",
        summary="Submit a deal with its company and people",
        description=(
            "Stores the submission and answers at once; a worker then creates the deal in Kommo without "
            "duplicating contacts. The same Idempotency-Key (or, without one, the same content within the "
            "source's window) answers with the submission already stored."
        ),
        request=IntakeLeadSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="Any unique string up to 255 characters; repeats never create a second deal.",
            )
        ],
        responses={
            202: IntakeSubmissionSerializer,
            200: OpenApiResponse(
                IntakeSubmissionSerializer, description="Already submitted: the stored one."
            ),
            400: PROBLEM,
            401: PROBLEM,
            422: OpenApiResponse(description="The Idempotency-Key was used for a different body."),
            503: OpenApiResponse(description="Not stored (the database is unavailable); send it again."),
        },
    )
    def post(self, request: Request) -> Response:
        source = cast(IntakeSource, request.auth)
        # Kept as text: an undecodable byte becomes U+FFFD, and so does NUL, which no text column takes.
        raw_body = request.body.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
        try:
            payload: Any = request.data
        except exceptions.ParseError as error:
            submission = services.intake_submission_reject(
                source=source, raw_body=raw_body, payload=None, errors={"body": [str(error.detail)]}
            )
            return problems.invalid_body(errors=submission.validation_errors, submission_id=submission.pk)
        key = request.headers.get("Idempotency-Key")
        serializer = IntakeLeadSerializer(data=payload, context={"source": source})
        valid = serializer.is_valid()
        errors = {} if valid else problems.flatten_errors(serializer.errors)
        if key is not None and not 0 < len(key.strip()) <= IDEMPOTENCY_KEY_MAX:
            errors["Idempotency-Key"] = [f"Must be 1 to {IDEMPOTENCY_KEY_MAX} characters."]
        if errors:
            submission = services.intake_submission_reject(
                source=source, raw_body=raw_body, payload=payload, errors=errors
            )
            return problems.invalid_body(errors=errors, submission_id=submission.pk)
        try:
            submission, created = services.intake_submission_create(
                source=source,
                raw_body=raw_body,
                payload=payload,
                normalized=serializer.validated_data,
                idempotency_key=key.strip() if key else None,
            )
        except services.IntakeKeyReused as reused:
            return problems.problem(
                status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
                title="Idempotency-Key reused",
                detail="This Idempotency-Key was already used for a different body; use a new key.",
                type_=problems.KEY_REUSED,
                submission_id=reused.submission.pk,
            )
        body = IntakeSubmissionSerializer(submission, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)


class IntakeSubmissionDetailView(IntakeAPIView):
    @extend_schema(
        operation_id="intake_submission_get",
        summary="Status and outcome of a submission",
        responses={200: IntakeSubmissionSerializer, 401: PROBLEM, 404: PROBLEM},
    )
    def get(self, request: Request, submission_id: int) -> Response:
        submission = intake_submission_for_source(
            source=cast(IntakeSource, request.auth), submission_id=submission_id
        )
        if submission is None:
            raise exceptions.NotFound("No such submission for this API key.")
        return Response(IntakeSubmissionSerializer(submission, context={"request": request}).data)


def api_docs(request: HttpRequest) -> HttpResponse:
    """The API reference rendered on the server from the OpenAPI schema: no script, no CDN."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return render(request, "intake/api_docs.html", docs.reference(schema))
