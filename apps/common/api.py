"""One error shape for the whole API: ``{"errors": [{"code", "message", "field"}]}``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def _flatten(detail: Any, field: str | None = None) -> list[dict[str, Any]]:
    if isinstance(detail, dict):
        errors = []
        for key, value in detail.items():
            name = (
                None if key in ("non_field_errors", "detail") else (f"{field}.{key}" if field else str(key))
            )
            errors += _flatten(value, name)
        return errors
    if isinstance(detail, list):
        errors = []
        for index, item in enumerate(detail):
            if isinstance(item, (dict, list)):
                errors += _flatten(item, f"{field}[{index}]" if field else f"[{index}]")
            else:
                errors += _flatten(item, field)
        return errors
    code = getattr(detail, "code", "invalid")
    return [{"code": code, "message": str(detail), "field": field}]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.APIException):
        response.data = {"errors": _flatten(exc.detail)}
    return response


def error_response(status: int, code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message, "field": field}]}


@contextmanager
def model_errors_as_api_errors() -> Iterator[None]:
    """Turn a service's model ValidationError into the API's 400 shape, field by field."""
    try:
        yield
    except DjangoValidationError as exc:
        raise serializers.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        ) from exc
