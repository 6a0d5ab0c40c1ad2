from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template import loader
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.common.request_id import get_request_id
from apps.tenancy.context import user_context
from apps.tenancy.middleware import LAST_TENANT_SESSION_KEY
from apps.tenancy.selectors import memberships_for_user

log = logging.getLogger(__name__)


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "ok"


def _check_broker() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "in-process (no broker configured)"
    from apps.config.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return "ok"


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and readiness: the database answers, and the broker when one is configured."""
    checks: dict[str, str] = {}
    healthy = True
    for name, check in (("database", _check_database), ("broker", _check_broker)):
        try:
            checks[name] = check()
        except Exception as exc:  # any failure makes the instance unready; say which and why
            log.warning("healthz: %s check failed: %s", name, exc)
            checks[name] = f"error: {exc.__class__.__name__}"
            healthy = False
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks}, status=200 if healthy else 503
    )


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Send the user to the tenant they used last (else the first by name), or explain they have none."""
    with user_context(request.user.pk):  # type: ignore[arg-type]  # login_required: signed in
        slugs = [m.tenant.slug for m in memberships_for_user(request.user)]  # type: ignore[arg-type]
    if slugs:
        last = request.session.get(LAST_TENANT_SESSION_KEY)
        return redirect("tenant-dashboard", tenant_slug=last if last in slugs else slugs[0])
    return render(request, "no_tenant.html", status=403)


def server_error(request: HttpRequest) -> HttpResponse:
    """500 page: rendered without context processors, which may be what failed."""
    return HttpResponse(loader.get_template("500.html").render({"request_id": get_request_id()}), status=500)
