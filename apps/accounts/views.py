from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.vary import vary_on_headers

from apps.accounts.forms import AccountForm
from apps.accounts.models import Account
from apps.accounts.plan_usage import account_usage
from apps.accounts.selectors import (
    LIST_LIMIT,
    account_discrepancies,
    account_discrepancy_comments,
    account_get,
    account_history,
    account_list,
    account_month,
    account_notes,
    account_period_choices,
    account_proposals,
    account_segments,
)
from apps.accounts.services import EDITABLE_FIELDS, account_note_add, account_update
from apps.reconciliation.core import Month, ReconciliationInputError
from apps.reconciliation.models import Discrepancy
from apps.tenancy.models import Tenant
from apps.tenancy.permissions import request_actor, request_role, request_tenant, requires
from apps.tenancy.roles import Action, role_can

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


OPEN_STATES = (Discrepancy.Status.OPEN, Discrepancy.Status.ASSIGNED, Discrepancy.Status.ESCALATED)
DRAFTS = 10


def _period(request: HttpRequest, account: Account, now: Any) -> str:
    try:
        month = Month.parse(request.GET.get("period", ""))
    except ReconciliationInputError:
        return account_month(account, now)
    return str(month) if 1970 <= month.year <= 2999 else account_month(account, now)


def _notes_context(tenant: Tenant, account: Account, *, error: str = "", body: str = "") -> dict[str, Any]:
    return {
        "account": account,
        "notes": account_notes(tenant, account),
        "note_error": error,
        "note_body": body,
    }


def _page_context(request: HttpRequest, tenant: Tenant, account: Account) -> dict[str, Any]:
    """Everything the CSM's account page shows; each part is a bounded number of queries."""
    from apps.reconciliation.views import customer_note

    now = timezone.now()
    histories = account_history(tenant, account)
    period = _period(request, account, now)
    findings = account_discrepancies(tenant, account)
    needing_a_word = [f for f in findings if f.status in OPEN_STATES and f.direction in ("under", "over")]
    drafts = [(finding, customer_note(finding)) for finding in needing_a_word[:DRAFTS]]
    proposals = account_proposals(tenant, account)
    # Maker-checker: only finance approvers decide, never on their own proposal, each once.
    may_approve = role_can(request_role(request) or "", Action.PROPOSAL_APPROVE)
    decidable = {
        p.pk
        for p in proposals
        if may_approve
        and p.status == p.Status.PROPOSED
        and p.proposed_by_id != request.user.pk
        and all(a.approver_id != request.user.pk for a in p.approvals.all())
    }
    return {
        "account": account,
        "histories": histories,
        "usage": account_usage(tenant, account, period, now=now),
        "period": period,
        "periods": account_period_choices(account, histories, now),
        "findings": findings,
        "findings_limited": len(findings) >= LIST_LIMIT,
        "drafts": drafts,
        "proposals": proposals,
        "decidable": decidable,
        "comments": account_discrepancy_comments(tenant, account),
        **_notes_context(tenant, account),
    }


@requires(Action.VIEW)
@vary_on_headers("HX-Request")
def account_detail_view(request: HttpRequest, tenant_slug: str, account_id: int) -> HttpResponse:
    """The CSM's page: history of findings and credits, usage against the plan's allotment, notes."""
    tenant = request_tenant(request)
    account = account_get(tenant, account_id)
    if getattr(request, "htmx", False) and request.GET.get("part") == "usage":
        now = timezone.now()
        period = _period(request, account, now)
        context = {
            "account": account,
            "usage": account_usage(tenant, account, period, now=now),
            "period": period,
            "periods": account_period_choices(account, account_history(tenant, account), now),
        }
        return render(request, "accounts/account_detail.html#usage", context)
    return render(request, "accounts/account_detail.html", _page_context(request, tenant, account))


@requires(Action.VIEW, write_action=Action.NOTE_ADD)
@vary_on_headers("HX-Request")
def account_notes_view(request: HttpRequest, tenant_slug: str, account_id: int) -> HttpResponse:
    """Add a customer note: HTMX swaps the notes card; without JavaScript, back to the page."""
    tenant = request_tenant(request)
    account = account_get(tenant, account_id)
    htmx = getattr(request, "htmx", False)
    page_url = reverse("account-detail", kwargs={"tenant_slug": tenant.slug, "account_id": account.pk})
    if request.method != "POST":
        if htmx:
            return render(request, "accounts/account_detail.html#notes", _notes_context(tenant, account))
        return redirect(f"{page_url}#notes")
    body = request.POST.get("body", "")
    try:
        account_note_add(account=account, actor=request_actor(request), body=body)
    except ValidationError as exc:
        error = " ".join(exc.messages)
        if htmx:
            context = _notes_context(tenant, account, error=error, body=body)
            return render(request, "accounts/account_detail.html#notes", context, status=422)
        context = _page_context(request, tenant, account) | {"note_error": error, "note_body": body}
        return render(request, "accounts/account_detail.html", context, status=422)
    if htmx:
        return render(request, "accounts/account_detail.html#notes", _notes_context(tenant, account))
    messages.success(request, "Note added.")
    return redirect(f"{page_url}#notes")


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
