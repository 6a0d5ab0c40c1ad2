from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from apps.common.request_id import get_request_id, reset_request_id, set_request_id


class RequestIdMiddleware:
    """Tag each request with an id (``X-Request-ID``) that logs and audit rows carry."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = set_request_id(request.headers.get("X-Request-ID"))
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = get_request_id()
            return response
        finally:
            reset_request_id(token)
