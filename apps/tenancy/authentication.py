from __future__ import annotations

from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request


class ApiKeyPrincipal:
    """Who an API request acts as: the key (checked by TenantMiddleware), not a user."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, key: Any) -> None:
        self.key = key
        self.pk = None

    def __str__(self) -> str:
        return f"api-key:{self.key.name}"


class ApiKeyAuthentication(BaseAuthentication):
    """The key was verified and the tenant entered by TenantMiddleware; expose it to DRF."""

    def authenticate(self, request: Request) -> tuple[ApiKeyPrincipal, Any] | None:
        key = getattr(request._request, "api_key", None)
        if key is None:
            return None
        return ApiKeyPrincipal(key), key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
