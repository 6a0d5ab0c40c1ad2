from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from apps.tenancy.permissions import request_role
from apps.tenancy.roles import MATRIX
from apps.tenancy.selectors import memberships_for_user

CATALOG_PAGES = frozenset(
    {
        "catalog",
        "meter-new",
        "meter-edit",
        "plan-new",
        "plan-detail",
        "plan-version",
        "charge-edit",
        "override-new",
    }
)


def tenancy(request: HttpRequest) -> dict[str, Any]:
    tenant = getattr(request, "tenant", None)
    if tenant is None or getattr(request, "membership", None) is None:
        return {"current_tenant": tenant}
    role = request_role(request)

    def switcher() -> list[Any]:
        return list(memberships_for_user(request.user))  # type: ignore[arg-type]

    return {
        "catalog_pages": CATALOG_PAGES,
        "usage_pages": (
            "usage-overview",
            "usage-import-list",
            "usage-import-detail",
            "usage-late",
            "usage-settings",
        ),
        "queue_pages": ("queue", "discrepancy"),
        "provider_pages": ("connections", "connection-detail"),
        "run_pages": ("runs", "run-detail", "bundle-upload", "run-line"),
        "current_tenant": tenant,
        "current_membership": request.membership,  # type: ignore[attr-defined]
        "can": {action.replace(".", "_"): True for action in MATRIX.get(role or "", frozenset())},
        "switcher_memberships": switcher,
    }
