"""Proposing and approving fixes from a discrepancy's page; the provider's own preview before approval."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from apps.approvals.draft_invoices import invoice_hold, invoice_release_propose
from apps.approvals.models import Proposal
from apps.approvals.services import invoice_of, proposal_cancel, proposal_create, proposal_decide
from apps.providers.base import CreditNoteLine, CreditNoteRequest, ProviderError
from apps.providers.registry import provider_for
from apps.reconciliation.selectors import discrepancy_get
from apps.tenancy.permissions import request_tenant, requires
from apps.tenancy.roles import Action
from apps.users.models import User


def _user(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User):  # tenant pages are for signed-in members only
        raise PermissionDenied("Sign in first.")
    return user


def _fail(request: HttpRequest, exc: Exception) -> None:
    messages.error(request, " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc))


@requires(Action.VIEW, write_action=(Action.CREDIT_PROPOSE, Action.CHARGE_PROPOSE))
@require_POST
def propose(request: HttpRequest, tenant_slug: str, discrepancy_id: int) -> HttpResponse:
    finding = discrepancy_get(request_tenant(request), discrepancy_id)
    text = request.POST.get("amount", "").strip()
    try:
        amount = Decimal(text) if text else None
        proposal_create(
            actor=_user(request),
            discrepancy=finding,
            kind=request.POST.get("kind", ""),
            amount=amount,
            reason=request.POST.get("reason", ""),
            customer_note=request.POST.get("customer_note", ""),
        )
        messages.success(request, "Proposed: a finance approver decides next.")
    except InvalidOperation:
        messages.error(request, f"Amount: {text!r} is not a number.")
    except ValidationError as exc:
        _fail(request, exc)
    return redirect("discrepancy", tenant_slug=tenant_slug, discrepancy_id=finding.pk)


@requires(Action.VIEW, write_action=Action.PROPOSAL_APPROVE)
@require_POST
def decide(request: HttpRequest, tenant_slug: str, proposal_id: int) -> HttpResponse:
    proposal = get_object_or_404(Proposal.objects.filter(tenant=request_tenant(request)), pk=proposal_id)
    try:
        proposal_decide(
            actor=_user(request),
            proposal=proposal,
            approve=request.POST.get("decision") == "approve",
            reason=request.POST.get("reason", ""),
        )
        messages.success(request, "Decision recorded.")
    except (ValidationError, PermissionDenied) as exc:
        _fail(request, exc)
    return redirect("discrepancy", tenant_slug=tenant_slug, discrepancy_id=proposal.discrepancy_id)


@requires(Action.VIEW, write_action=(Action.PROPOSAL_APPROVE, Action.CREDIT_PROPOSE, Action.CHARGE_PROPOSE))
@require_POST
def cancel(request: HttpRequest, tenant_slug: str, proposal_id: int) -> HttpResponse:
    """Stop a proposal before it reaches the provider (the service says who may, and when)."""
    proposal = get_object_or_404(Proposal.objects.filter(tenant=request_tenant(request)), pk=proposal_id)
    try:
        proposal_cancel(actor=_user(request), proposal=proposal, reason=request.POST.get("reason", ""))
        messages.success(request, "Cancelled: nothing more will be sent to the provider.")
    except (ValidationError, PermissionDenied) as exc:
        _fail(request, exc)
    return redirect("discrepancy", tenant_slug=tenant_slug, discrepancy_id=proposal.discrepancy_id)


@requires(Action.VIEW, write_action=(Action.CREDIT_PROPOSE, Action.CHARGE_PROPOSE))
@require_POST
def hold(request: HttpRequest, tenant_slug: str, discrepancy_id: int) -> HttpResponse:
    """Hold the finding's draft invoice at the provider now (no approval: it only stops it going out)."""
    finding = discrepancy_get(request_tenant(request), discrepancy_id)
    try:
        invoice_hold(actor=_user(request), discrepancy=finding, reason=request.POST.get("reason", ""))
        messages.success(request, "Holding the draft invoice: it will not finalize until it is released.")
    except (ValidationError, PermissionDenied) as exc:
        _fail(request, exc)
    return redirect("discrepancy", tenant_slug=tenant_slug, discrepancy_id=finding.pk)


@requires(Action.VIEW, write_action=(Action.CREDIT_PROPOSE, Action.CHARGE_PROPOSE))
@require_POST
def release(request: HttpRequest, tenant_slug: str, discrepancy_id: int) -> HttpResponse:
    """Propose releasing the held invoice (finalize / close); a finance approver decides."""
    finding = discrepancy_get(request_tenant(request), discrepancy_id)
    try:
        invoice_release_propose(
            actor=_user(request), discrepancy=finding, reason=request.POST.get("reason", "")
        )
        messages.success(request, "Release proposed: a finance approver decides next.")
    except (ValidationError, PermissionDenied) as exc:
        _fail(request, exc)
    return redirect("discrepancy", tenant_slug=tenant_slug, discrepancy_id=finding.pk)


def provider_preview(proposal: Proposal) -> str:
    """What the provider would issue for a credit-note proposal (its own preview), in a sentence."""
    if proposal.kind != Proposal.Kind.CREDIT_NOTE or proposal.connection is None:
        return ""
    invoice = invoice_of(proposal.discrepancy, proposal.connection.provider)
    if invoice is None:
        return "No invoice of this account at the provider to preview against."
    try:
        note = provider_for(proposal.connection).preview_credit_note(
            CreditNoteRequest(
                invoice=invoice.external_id,
                reason=proposal.reason or "billing correction",
                lines=(CreditNoteLine(invoice_line=None, meter=None, amount=proposal.amount),),
            )
        )
    except ProviderError as exc:
        return f"The provider could not preview it: {exc}"
    return (
        f"{proposal.connection.get_provider_display()} would issue a credit note of {note.amount} "
        f"{note.currency.upper()} on invoice {invoice.external_id}."
    )
