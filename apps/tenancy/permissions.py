"""Enforcing the role-by-action matrix in views, APIs and services."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from apps.tenancy.roles import Action, role_can

if TYPE_CHECKING:
    from apps.audit.services import Actor
    from apps.tenancy.models import Tenant


def request_role(request: HttpRequest | Request) -> str | None:
    """The role the request acts with: the member's role, or the API key's."""
    key = getattr(request, "api_key", None)
    if key is not None:
        return key.role
    membership = getattr(request, "membership", None)
    return membership.role if membership is not None else None


def authorize(role: str | None, action: str) -> None:
    """Raise PermissionDenied unless ``role`` may do ``action``. Services call this too."""
    if role is None or not role_can(role, action):
        raise PermissionDenied(f"Your role may not {Action(action).label.lower()}.")


def authorize_any(role: str | None, actions: str | tuple[str, ...]) -> None:
    """Like ``authorize``, when any one of several actions is enough."""
    options = (actions,) if isinstance(actions, str) else actions
    if not any(role is not None and role_can(role, a) for a in options):
        authorize(role, options[0])


def requires(action: str, *, write_action: str | tuple[str, ...] | None = None) -> Callable[..., Any]:
    """Guard a tenant view: ``action`` for safe methods, ``write_action`` (default: ``action``) for others.

    ``write_action`` may name several actions: any one of them lets the request through (the
    service then checks the exact one, e.g. proposing a credit note versus a catch-up charge).
    """

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method in ("GET", "HEAD", "OPTIONS"):
                authorize(request_role(request), action)
            else:
                authorize_any(request_role(request), write_action or action)
            return view(request, *args, **kwargs)

        wrapped.required_action = action  # type: ignore[attr-defined]
        wrapped.required_write_action = write_action or action  # type: ignore[attr-defined]
        return wrapped

    return decorator


class HasTenantAction(BasePermission):
    """DRF: the view's ``required_action`` (safe methods) / ``required_write_action`` must be allowed."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if getattr(request._request, "api_key", None) is None:
            return False
        role = request_role(request._request)
        safe = request.method in ("GET", "HEAD", "OPTIONS")
        needed = getattr(view, "required_action", Action.VIEW)
        if not safe:
            needed = getattr(view, "required_write_action", needed)
        return role is not None and role_can(role, needed)


def request_tenant(request: HttpRequest | Request) -> Tenant:
    """The tenant TenantMiddleware resolved for this request (a tenant URL or an API key)."""
    tenant = getattr(request, "tenant", None)
    if tenant is None:
        raise PermissionDenied("This request acts for no tenant.")
    return tenant


def request_actor(request: HttpRequest | Request) -> Actor:
    """Who the request acts as, for services and the audit trail: the API key, or the signed-in user."""
    key = getattr(request, "api_key", None)
    return key if key is not None else request.user
