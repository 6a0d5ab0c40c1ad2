from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.vary import vary_on_headers

from apps.accounts.forms import AccountForm
from apps.accounts.selectors import account_get, account_list, account_segments
from apps.accounts.services import EDITABLE_FIELDS, account_update
from apps.tenancy.permissions import request_actor, request_tenant, requires
from apps.tenancy.roles import Action

PAGE_SIZE = 50


@requires(Action.VIEW)
@vary_on_headers("HX-Request")
def account_list_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = request_tenant(request)
    search = request.GET.get("q", "").strip()
    segment = request.GET.get("segment", "").strip()
    page = Paginator(account_list(tenant, search=search, segment=segment), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    context = {"page": page, "q": search, "segment": segment, "segments": account_segments(tenant)}
    template = "accounts/account_list.html#rows" if request.htmx else "accounts/account_list.html"  # type: ignore[attr-defined]
    return render(request, template, context)


@requires(Action.VIEW)
def account_detail_view(request: HttpRequest, tenant_slug: str, account_id: int) -> HttpResponse:
    account = account_get(request_tenant(request), account_id)
    return render(request, "accounts/account_detail.html", {"account": account})


@requires(Action.ACCOUNT_EDIT)
@vary_on_headers("HX-Request")
def account_edit_view(request: HttpRequest, tenant_slug: str, account_id: int) -> HttpResponse:
    """Edit in place (HTMX swaps the card) or as a page without JavaScript.

    A form with errors answers 422, which the page's htmx config swaps in (errors next to the fields).
    """
    tenant = request_tenant(request)
    account = account_get(tenant, account_id)
    form = AccountForm(request.POST or None, instance=account, tenant=tenant)
    if request.method == "POST" and form.is_valid():
        account.refresh_from_db()
        account_update(
            account=account,
            actor=request_actor(request),
            data={f: form.cleaned_data[f] for f in EDITABLE_FIELDS},
        )
        if request.htmx:  # type: ignore[attr-defined]
            return render(
                request, "accounts/account_detail.html#info", {"account": account_get(tenant, account_id)}
            )
        return redirect("account-detail", tenant_slug=tenant.slug, account_id=account.pk)
    template = "accounts/account_edit.html#form" if request.htmx else "accounts/account_edit.html"  # type: ignore[attr-defined]
    return render(request, template, {"account": account, "form": form}, status=422 if form.errors else 200)
