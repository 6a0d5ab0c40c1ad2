"""How tasks act for a tenant: they take ids, enter the tenant's context, reload, and call a service."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from celery import shared_task

from apps.common.request_id import reset_request_id, set_request_id
from apps.tenancy.context import tenant_context

F = TypeVar("F", bound=Callable[..., Any])


def tenant_task(**task_options: Any) -> Callable[[F], Any]:
    """A Celery task whose first argument is ``tenant_id``; its body runs inside that tenant's context.

    Retries with exponential backoff and jitter by default; pass ``autoretry_for`` to choose which errors.
    """
    options = {
        "acks_late": True,
        "retry_backoff": True,
        "retry_jitter": True,
        "max_retries": 5,
        **task_options,
    }

    def decorator(func: F) -> Any:
        @functools.wraps(func)
        def run(tenant_id: int, *args: Any, **kwargs: Any) -> Any:
            token = set_request_id(kwargs.pop("request_id", None))
            try:
                with tenant_context(tenant_id):
                    return func(tenant_id, *args, **kwargs)
            finally:
                reset_request_id(token)

        return shared_task(**options)(run)

    return decorator
