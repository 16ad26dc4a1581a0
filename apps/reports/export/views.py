"""``GET /api/v1/export/<table>?format=csv|json``: thin views over the export's tables and formats."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Any

from django.db import connection
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, renderers
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.reports.export.authentication import CanExport, ExportKeyAuthentication
from apps.reports.export.formats import csv_copy_stream, csv_stream, json_row
from apps.reports.export.tables import TABLES, Table

PAGE_SIZE = 1000
MAX_PAGE_SIZE = 10_000
# A load's as_of is this much before it started: rows written by transactions still open then are in the
# next incremental load too (a few rows again, never one missed).
AS_OF_OVERLAP = dt.timedelta(seconds=60)


class CSVRenderer(renderers.BaseRenderer):
    """Only names ``format=csv`` for content negotiation: the CSV view answers with its own stream."""

    media_type = "text/csv"
    format = "csv"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        return b"" if data is None else json.dumps(data).encode()


def _timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _cursor_encode(after: int, as_of: dt.datetime) -> str:
    raw = json.dumps({"after": after, "as_of": _timestamp(as_of)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor_decode(text: str) -> tuple[int, dt.datetime]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        after, as_of = int(raw["after"]), parse_datetime(raw["as_of"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise exceptions.ValidationError({"cursor": "Not a cursor this API gave."}) from exc
    if as_of is None:
        raise exceptions.ValidationError({"cursor": "Not a cursor this API gave."})
    return after, as_of


def _integer(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise exceptions.ValidationError({name: "A whole number."}) from exc


def _rows(table: Table, request: Request) -> Any:
    rows = table.queryset()
    since_text = request.query_params.get("updated_since")
    if since_text:
        since = parse_datetime(since_text.replace(" ", "+"))
        if since is None:
            raise exceptions.ValidationError(
                {"updated_since": "An ISO 8601 time, e.g. 2026-01-31T00:00:00Z."}
            )
        if timezone.is_naive(since):
            since = timezone.make_aware(since, dt.UTC)
        rows = rows.filter(table.changed_since(since))
    account = _integer(request, "account")
    if account is not None:
        rows = rows.filter(**{table.account_field: account})
    pipeline = _integer(request, "pipeline")
    if pipeline is not None:
        rows = rows.filter(**{table.pipeline_field: pipeline})
    return rows


# One sentence per table (plain text: /api/docs/ shows the description as one paragraph).
TABLE_COLUMNS = " ".join(
    f"Table {name}: " + ", ".join(f"{column.name} ({column.kind})" for column in table.columns) + "."
    for name, table in sorted(TABLES.items())
)

PARAMETERS = [
    OpenApiParameter("table", str, OpenApiParameter.PATH, enum=sorted(TABLES), description="The table."),
    OpenApiParameter(
        "format", str, enum=["json", "csv"], description="json (default): pages; csv: one stream."
    ),
    OpenApiParameter(
        "updated_since",
        str,
        description="ISO 8601 time: only rows the portal changed at or after it (use the last load's as_of).",
    ),
    OpenApiParameter("account", int, description="The portal's id of one Kommo account."),
    OpenApiParameter("pipeline", int, description="Kommo's id of one pipeline."),
    OpenApiParameter("cursor", str, description="JSON: the next page's position, from the `next` link."),
    OpenApiParameter(
        "page_size", int, description=f"JSON: rows per page (default {PAGE_SIZE}, at most {MAX_PAGE_SIZE})."
    ),
]


class ExportView(APIView):
    authentication_classes = [ExportKeyAuthentication, SessionAuthentication]
    permission_classes = [CanExport]
    renderer_classes = [renderers.JSONRenderer, CSVRenderer]

    @extend_schema(
        operation_id="export_table",
        summary="One export table as CSV (streamed) or JSON (pages)",
        description=(
            "CSV: the header row, then every row, streamed; header X-Export-As-Of. JSON: {table, columns, "
            "as_of, next, results}; follow next until it is null. Rows come ordered by id; the next "
            "incremental load passes updated_since=as_of. Each column is described in docs/export.md. "
            + TABLE_COLUMNS
        ),
        parameters=PARAMETERS,
        responses={
            (200, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT, description="A page of rows and the next page's link."
            ),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="Every row, the header first."),
            400: OpenApiResponse(description="A filter is not understood."),
            401: OpenApiResponse(description="No key, an unknown key or a revoked key."),
            403: OpenApiResponse(description="Signed in without the right to see every deal's reports."),
            404: OpenApiResponse(description="No such table."),
        },
    )
    def get(self, request: Request, table: str) -> Any:
        spec = TABLES.get(table)
        if spec is None:
            raise exceptions.NotFound(f"No table {table!r}; the tables are {', '.join(sorted(TABLES))}.")
        cursor = request.query_params.get("cursor")
        after, as_of = _cursor_decode(cursor) if cursor else (0, timezone.now() - AS_OF_OVERLAP)
        rows = _rows(spec, request)
        if request.query_params.get("format") == "csv":
            if connection.vendor == "postgresql":
                stream = csv_copy_stream(spec, rows)
            else:
                stream = csv_stream(spec, rows.iterator(chunk_size=2000))
            response = StreamingHttpResponse(stream, content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="{spec.name}.csv"'
            response["X-Export-As-Of"] = _timestamp(as_of)
            return response
        size = _integer(request, "page_size")
        size = PAGE_SIZE if size is None else size
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise exceptions.ValidationError({"page_size": f"From 1 to {MAX_PAGE_SIZE}."})
        page = list(rows.filter(pk__gt=after)[: size + 1])
        to_dict = json_row(spec)
        next_url = None
        if len(page) > size:
            page = page[:size]
            query = request.query_params.copy()
            query["cursor"] = _cursor_encode(page[-1][0], as_of)
            next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
        return Response(
            {
                "table": spec.name,
                "columns": spec.column_names,
                "as_of": _timestamp(as_of),
                "next": next_url,
                "results": [to_dict(row) for row in page],
            }
        )
