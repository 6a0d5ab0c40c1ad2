"""Usage API: bulk event ingestion, reading events back, CSV imports.

``POST /api/v1/events`` is the hot path: the body is read raw and decoded by msgspec (see
apps.usage.ingest), never by DRF's parsers or serializers; the serializers below only
document the shapes for the OpenAPI schema.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import msgspec
from django.conf import settings
from django.http import FileResponse, HttpResponse
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.common.api import error_response
from apps.tenancy.permissions import request_actor, request_tenant
from apps.tenancy.roles import Action
from apps.usage.imports import import_stream
from apps.usage.ingest import PayloadError, decode_json_array, decode_ndjson
from apps.usage.models import ImportJob, UsageEvent
from apps.usage.reports import error_report_file
from apps.usage.selectors import event_list, import_errors, import_job_get, import_job_list
from apps.usage.services import events_ingest

MAX_EVENTS: Final = getattr(settings, "USAGE_MAX_EVENTS_PER_REQUEST", 10_000)
MAX_BODY_BYTES: Final = getattr(settings, "USAGE_MAX_REQUEST_BYTES", 32 * 1024 * 1024)
MAX_IMPORT_BYTES: Final = getattr(settings, "USAGE_MAX_IMPORT_BYTES", 4 * 1024 * 1024 * 1024)
JSON_TYPES: Final = frozenset({"application/json"})
NDJSON_TYPES: Final = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}
)
CSV_TYPES: Final = frozenset({"text/csv", "application/csv"})
DEFAULT_WINDOW: Final = dt.timedelta(days=7)

_encoder = msgspec.json.Encoder(decimal_format="string")


def _json(data: Any, status_code: int = 200) -> HttpResponse:
    return HttpResponse(_encoder.encode(data), status=status_code, content_type="application/json")


def _error(status_code: int, code: str, message: str, field: str | None = None) -> HttpResponse:
    return _json(error_response(status_code, code, message, field), status_code)


def _media_type(request: Request) -> str:
    return (request.content_type or "").split(";", 1)[0].strip().lower()


def _content_length(request: Request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


class EventErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="The event's position in the request (from 0).")
    event_id = serializers.CharField(allow_null=True)
    field = serializers.CharField(allow_null=True)
    code = serializers.ChoiceField(
        choices=[
            "required",
            "invalid",
            "invalid_json",
            "in_future",
            "unknown_account",
            "unknown_meter",
            "conflict",
        ]
    )
    message = serializers.CharField()


IngestResultSerializer = inline_serializer(
    "IngestResult",
    {
        "batch_id": serializers.IntegerField(),
        "received_at": serializers.DateTimeField(),
        "summary": inline_serializer(
            "IngestSummary",
            {
                "accepted": serializers.IntegerField(help_text="Stored now."),
                "duplicates": serializers.IntegerField(
                    help_text="Already stored with the same content; not stored again."
                ),
                "conflicts": serializers.IntegerField(
                    help_text="Already stored with different content; kept as stored."
                ),
                "rejected": serializers.IntegerField(
                    help_text="Invalid, or naming an unknown account or meter."
                ),
            },
        ),
        "errors": EventErrorSerializer(many=True),
    },
)


class EventInputSerializer(serializers.Serializer):
    event_id = serializers.CharField(max_length=255, help_text="Idempotency key, unique within the tenant.")
    account_id = serializers.CharField(max_length=100, help_text="The account's id (its key in Trueup).")
    meter = serializers.CharField(max_length=64, help_text="The meter's key, e.g. api_calls.")
    quantity = serializers.DecimalField(max_digits=30, decimal_places=12, min_value=0, coerce_to_string=True)
    occurred_at = serializers.DateTimeField(help_text="RFC 3339 with an offset, e.g. 2026-10-01T12:00:00Z.")
    properties = serializers.DictField(required=False)


class EventOutputSerializer(serializers.ModelSerializer):
    account_id: serializers.CharField = serializers.CharField(source="account.key")
    meter: serializers.CharField = serializers.CharField(source="meter.key")
    batch_id: serializers.IntegerField = serializers.IntegerField()

    class Meta:
        model = UsageEvent
        fields = [
            "event_id",
            "account_id",
            "meter",
            "quantity",
            "occurred_at",
            "received_at",
            "properties",
            "source",
            "batch_id",
        ]


class EventPagination(CursorPagination):
    ordering = ("-occurred_at", "-id")
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class EventListApi(APIView):
    """Send a batch of usage events (idempotent by ``event_id``), or read the tenant's events."""

    required_action = Action.VIEW
    required_write_action = Action.EVENTS_INGEST
    parser_classes: list[Any] = []  # the body is decoded by msgspec, not DRF

    @extend_schema(
        operation_id="events_ingest",
        request={
            "application/json": EventInputSerializer(many=True),
            "application/x-ndjson": OpenApiTypes.STR,
        },
        responses={
            200: IngestResultSerializer,
            400: OpenApiResponse(description="The body is not a JSON array / NDJSON."),
            413: OpenApiResponse(
                description=f"More than {MAX_EVENTS} events, or a body over the size limit."
            ),
            415: OpenApiResponse(description="Not application/json or application/x-ndjson."),
        },
        description=(
            f"Up to {MAX_EVENTS} events per request, as a JSON array or NDJSON (one event per line). "
            "Each event is accepted, a duplicate (same event_id and content as a stored one: acknowledged, "
            "not stored again), a conflict (same event_id, different content: the stored one stays) or "
            "rejected; every failure is listed with its index. Valid events are stored even when others "
            "in the batch fail. Unknown accounts are rejected unless the tenant turned on auto-creation. "
            "received_at is always the server's clock."
        ),
    )
    def post(self, request: Request) -> HttpResponse:
        media_type = _media_type(request)
        if media_type not in JSON_TYPES and media_type not in NDJSON_TYPES:
            return _error(
                415,
                "unsupported_media_type",
                "Send events as application/json (an array) or application/x-ndjson (one per line).",
            )
        if _content_length(request) > MAX_BODY_BYTES:
            return _too_large(f"The body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB.")
        body = request.stream.read(MAX_BODY_BYTES + 1) if request.stream is not None else b""
        if len(body) > MAX_BODY_BYTES:
            return _too_large(f"The body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB.")
        if not body.strip():
            return _error(400, "empty", "The body holds no events.")
        try:
            events, errors = (decode_ndjson if media_type in NDJSON_TYPES else decode_json_array)(body)
        except PayloadError as exc:
            return _error(400, "invalid_json", str(exc))
        if len(events) > MAX_EVENTS:
            return _too_large(f"This request holds {len(events)} events.")
        result = events_ingest(
            tenant=request_tenant(request), events=events, errors=errors, actor=request_actor(request)
        )
        return _json(
            {
                "batch_id": result.batch.pk,
                "received_at": result.batch.received_at,
                "summary": result.summary,
                "errors": result.errors,
            }
        )

    @extend_schema(
        operation_id="events_list",
        parameters=[
            OpenApiParameter("event_id", str, many=True, description="One or more event ids."),
            OpenApiParameter("account_id", str),
            OpenApiParameter("meter", str),
            OpenApiParameter("occurred_from", OpenApiTypes.DATETIME, description="Default: 7 days ago."),
            OpenApiParameter(
                "occurred_to", OpenApiTypes.DATETIME, description="Exclusive; default: now + 1 day."
            ),
        ],
        responses=EventOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        ids = params.getlist("event_id")
        bounds = {}
        for name in ("occurred_from", "occurred_to"):
            if params.get(name):
                value = parse_datetime(params[name])
                if value is None or value.utcoffset() is None:
                    raise serializers.ValidationError(
                        {name: "Expected an ISO 8601 date-time with an offset."}
                    )
                bounds[name] = value
        if not ids:  # bound the scan: a time range is what the event table is indexed by
            now = dt.datetime.now(dt.UTC)
            bounds.setdefault("occurred_from", now - DEFAULT_WINDOW)
            bounds.setdefault("occurred_to", now + dt.timedelta(days=1))
        queryset = event_list(
            request_tenant(request),
            event_ids=ids,
            account_key=params.get("account_id", ""),
            meter_key=params.get("meter", ""),
            **bounds,
        )
        paginator = EventPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(EventOutputSerializer(page, many=True).data)


def _too_large(detail: str) -> HttpResponse:
    return _error(
        413,
        "too_large",
        f"{detail} Send at most {MAX_EVENTS} events and {MAX_BODY_BYTES // (1024 * 1024)} MiB per request; "
        "split larger sets into several requests, or upload a CSV to /api/v1/events/imports.",
    )


class ImportOutputSerializer(serializers.ModelSerializer):
    percent = serializers.IntegerField()
    errors_url = serializers.SerializerMethodField()

    class Meta:
        model = ImportJob
        fields = [
            "id",
            "filename",
            "source",
            "status",
            "total_bytes",
            "bytes_read",
            "percent",
            "rows_read",
            "accepted",
            "duplicates",
            "conflicts",
            "rejected",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "errors_url",
        ]

    def get_errors_url(self, job: ImportJob) -> str:
        from django.urls import reverse

        return reverse("api-event-import-errors", kwargs={"import_id": job.pk})


class EventImportListApi(APIView):
    """Upload a CSV file of events (the body, ``text/csv``); it is imported in the background."""

    required_action = Action.VIEW
    required_write_action = Action.EVENTS_INGEST
    parser_classes: list[Any] = []

    @extend_schema(
        operation_id="event_imports_create",
        request={"text/csv": OpenApiTypes.BINARY},
        parameters=[OpenApiParameter("filename", str, description="A name to show for the file.")],
        responses={202: ImportOutputSerializer, 413: OpenApiResponse(), 415: OpenApiResponse()},
        description="Columns: event_id,account_id,meter,quantity,occurred_at[,properties] (a header line "
        "first). Poll the import until its status is done, then fetch the error report "
        "(line, field, reason).",
    )
    def post(self, request: Request) -> HttpResponse:
        if _media_type(request) not in CSV_TYPES:
            return _error(415, "unsupported_media_type", "Send the file as text/csv, in the request body.")
        length = _content_length(request)
        if length > MAX_IMPORT_BYTES:
            return _error(
                413, "too_large", f"Files over {MAX_IMPORT_BYTES // 1024**3} GiB cannot be imported."
            )
        if request.stream is None or length == 0:
            return _error(400, "empty", "The body is empty: send the CSV file with a Content-Length.")
        job = import_stream(
            tenant=request_tenant(request),
            actor=request_actor(request),
            stream=request.stream,
            filename=request.query_params.get("filename", "events.csv"),
            source="api",
        )
        return Response(ImportOutputSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(operation_id="event_imports_list", responses=ImportOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        paginator = CursorPagination()
        paginator.ordering = ("-created_at", "-id")
        page = paginator.paginate_queryset(import_job_list(request_tenant(request)), request, view=self)
        return paginator.get_paginated_response(ImportOutputSerializer(page, many=True).data)


class EventImportDetailApi(APIView):
    """One CSV import and its progress."""

    required_action = Action.VIEW

    @extend_schema(operation_id="event_imports_retrieve", responses=ImportOutputSerializer)
    def get(self, request: Request, import_id: int) -> Response:
        job = import_job_get(request_tenant(request), import_id)
        return Response(ImportOutputSerializer(job).data)


class EventImportErrorsApi(APIView):
    """The import's error report as CSV: line, field, code, reason."""

    required_action = Action.VIEW

    @extend_schema(operation_id="event_imports_errors", responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request: Request, import_id: int) -> FileResponse:
        tenant = request_tenant(request)
        job = import_job_get(tenant, import_id)
        return FileResponse(
            error_report_file(import_errors(tenant, job)),
            as_attachment=True,
            filename=f"import-{job.pk}-errors.csv",
            content_type="text/csv",
        )
