"""The audit log screen: filter, page through, expand a row; export what is filtered as CSV."""

from __future__ import annotations

import csv
from collections.abc import Iterator

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.vary import vary_on_headers

from apps.audit.forms import AuditFilterForm
from apps.audit.selectors import audit_changes, audit_events, audit_export_rows, audit_page
from apps.tenancy.context import tenant_context
from apps.tenancy.permissions import authorize, request_role, request_tenant, requires
from apps.tenancy.roles import Action

PAGE_SIZE = 50


def _query_without(request: HttpRequest, *names: str) -> str:
    query = request.GET.copy()
    for name in names:
        query.pop(name, None)
    return query.urlencode()


@requires(Action.AUDIT_VIEW)
@vary_on_headers("HX-Request")
def audit_log(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = request_tenant(request)
    form = AuditFilterForm(request.GET or None, tenant=tenant)
    page = audit_page(
        audit_events(tenant, form.filters()),
        before=request.GET.get("before", ""),
        after=request.GET.get("after", ""),
        size=PAGE_SIZE,
    )
    context = {
        "form": form,
        "page": page,
        "rows": [(event, audit_changes(event)) for event in page.events],
        "query": _query_without(request, "before", "after"),
    }
    template = "audit/log.html#rows" if getattr(request, "htmx", False) else "audit/log.html"
    return render(request, template, context, status=422 if form.is_bound and form.errors else 200)


class _Echo:
    """A write-only file: csv.writer hands back each row as text for the response to stream."""

    def write(self, value: str) -> str:
        return value


@requires(Action.AUDIT_VIEW)
def audit_export(request: HttpRequest, tenant_slug: str) -> StreamingHttpResponse:
    """The filtered log as CSV, streamed: rows are read and sent in chunks, however long the log."""
    authorize(request_role(request), Action.EXPORT)
    tenant = request_tenant(request)
    events = audit_events(tenant, AuditFilterForm(request.GET or None, tenant=tenant).filters())

    def stream() -> Iterator[str]:
        # The response is sent after the view (and its tenant context) returned: enter it again.
        writer = csv.writer(_Echo())
        with tenant_context(tenant):
            for row in audit_export_rows(events):
                yield writer.writerow(row)

    response = StreamingHttpResponse(stream(), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="audit-{tenant.slug}-{stamp}.csv"'
    return response
