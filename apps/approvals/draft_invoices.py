"""Draft invoices: hold one at the provider, fix it, then release it.

A pre-invoice run finds a discrepancy on a draft (Stripe) or pending (Chargebee) invoice. Before
it goes out, Trueup can hold it (it will not finalize on its own), add a correcting line to it,
and release it (Stripe: finalize; Chargebee: close). Each is a ``Proposal`` naming the invoice and
each acts at the provider through the same outbox, with an idempotency key derived from the
proposal, so every step happens once whatever retries, double clicks or crashes happen.

- Hold: no approval (it moves no money; it only stops the invoice from going out). One per invoice.
- Fix: maker-checker like a credit note (two approvers above the tenant's limit). One per finding.
- Release: a separate proposal, approved by one finance approver other than the proposer. It is
  not a step of the fix, because one draft often carries several wrong lines (one finding each),
  and it can only be released once all of them are fixed (or when none needed a fix after all).
  A released invoice is final: no more fixes, no second release.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from apps.approvals.models import LIVE, Proposal
from apps.approvals.selectors import discrepancy_invoice
from apps.approvals.services import _queue, _role
from apps.audit.services import audit_record
from apps.billing.models import Invoice, InvoiceStatus, ProviderConnection
from apps.pricing import quantize
from apps.reconciliation.models import Discrepancy
from apps.tenancy.models import Tenant
from apps.tenancy.permissions import authorize, authorize_any
from apps.tenancy.roles import Action
from apps.users.models import User

OPEN = (Proposal.Status.PROPOSED, Proposal.Status.APPROVED, Proposal.Status.FAILED)


def _locked_invoice(discrepancy: Discrepancy) -> Invoice:
    """The invoice the finding was billed on, locked: hold, fixes and release of one invoice go in turn."""
    invoice = discrepancy_invoice(discrepancy)
    if invoice is None:
        raise ValidationError("This finding is on no invoice from a provider: there is no draft to hold.")
    return Invoice.objects.select_for_update().get(pk=invoice.pk)


def _writable_connection(invoice: Invoice) -> ProviderConnection:
    connection = ProviderConnection.objects.filter(provider=invoice.source).order_by("pk").first()
    if connection is None:
        raise ValidationError(f"Invoice {invoice.external_id} comes from no provider connection.")
    if not connection.allow_writes:
        raise ValidationError(
            f"{connection} is read-only: a tenant admin must enable writes before Trueup acts on invoices."
        )
    return connection


def _save(proposal: Proposal) -> Proposal:
    try:
        with transaction.atomic():
            proposal.full_clean()
            proposal.save()
    except IntegrityError as exc:  # the same request twice at once: the constraint lets one through
        raise ValidationError("Someone did this a moment ago: reload the page.") from exc
    return proposal


@transaction.atomic
def invoice_hold(*, actor: User, discrepancy: Discrepancy, reason: str = "") -> Proposal:
    """Stop the draft invoice of a finding from finalizing (Stripe ``auto_advance=false``; Chargebee:
    the pending invoice stays pending), so it can be fixed first.

    A hold needs no approval: it moves no money and only keeps the invoice from going out, so any
    proposer may hold, straight away. It is still an action at the provider, so it goes through
    the outbox with an idempotency key from the proposal, exactly once.
    """
    authorize_any(_role(actor), (Action.CHARGE_PROPOSE, Action.CREDIT_PROPOSE))
    invoice = _locked_invoice(discrepancy)
    if invoice.status != InvoiceStatus.DRAFT:
        raise ValidationError(
            f"Invoice {invoice.external_id} is {invoice.get_status_display().lower()}: "
            "only a draft invoice can be held."
        )
    if Proposal.objects.filter(invoice=invoice, kind=Proposal.Kind.INVOICE_HOLD).filter(LIVE).exists():
        raise ValidationError(f"Invoice {invoice.external_id} is held already.")
    hold = _save(
        Proposal(
            discrepancy=discrepancy,
            kind=Proposal.Kind.INVOICE_HOLD,
            amount=Decimal(0),
            currency=invoice.currency,
            reason=reason,
            proposed_by=actor,
            approvals_needed=0,
            status=Proposal.Status.APPROVED,
            connection=_writable_connection(invoice),
            invoice=invoice,
        )
    )
    audit_record(
        actor=actor,
        action="invoice.hold",
        target=hold,
        after={"invoice": invoice.external_id, "discrepancy": discrepancy.pk},
        reason=reason,
    )
    _queue(hold)
    return hold


def _held(invoice: Invoice) -> None:
    """Refuse unless the hold reached the provider and the invoice is not (being) released."""
    release = (
        Proposal.objects.filter(invoice=invoice, kind=Proposal.Kind.INVOICE_RELEASE).filter(LIVE).first()
    )
    if release is not None and release.status == Proposal.Status.EXECUTED:
        raise ValidationError(f"Invoice {invoice.external_id} was released: it is final and cannot change.")
    if release is not None:
        raise ValidationError(f"Invoice {invoice.external_id} is being released: it cannot change any more.")
    held = Proposal.objects.filter(
        invoice=invoice, kind=Proposal.Kind.INVOICE_HOLD, status=Proposal.Status.EXECUTED
    ).exists()
    if not held:
        raise ValidationError(f"Hold invoice {invoice.external_id} first (the hold must reach the provider).")


@transaction.atomic
def invoice_fix_propose(
    *, actor: User, discrepancy: Discrepancy, amount: Decimal | None = None, reason: str = ""
) -> Proposal:
    """Propose a correcting line on the held draft: the under-billed amount added, or (Stripe only)
    the over-billed amount taken off with a negative line. Maker-checker approves it like a credit note."""
    over = discrepancy.direction == "over"
    authorize(_role(actor), Action.CREDIT_PROPOSE if over else Action.CHARGE_PROPOSE)
    if discrepancy.direction not in ("over", "under"):
        raise ValidationError("This finding was billed as expected: there is nothing to correct.")
    invoice = _locked_invoice(discrepancy)
    _held(invoice)
    if over and invoice.source == ProviderConnection.Provider.CHARGEBEE:
        raise ValidationError(
            "Chargebee adds only positive charges to a pending invoice: release it, then propose a "
            "credit note for the over-billed amount."
        )
    if Proposal.objects.filter(discrepancy=discrepancy, kind=Proposal.Kind.INVOICE_FIX).filter(LIVE).exists():
        raise ValidationError("This finding already has a correcting line on the invoice.")
    gap = quantize(abs(discrepancy.amount), invoice.currency)
    size = gap if amount is None else quantize(abs(amount), invoice.currency)
    if size <= 0 or size > gap:
        raise ValidationError(
            {"amount": f"The amount must be more than 0 and at most {gap} {invoice.currency}."}
        )
    if size < gap and not reason.strip():
        raise ValidationError({"reason": "Correcting less than the difference needs a reason."})
    tenant = Tenant.objects.get(pk=discrepancy.tenant_id)
    proposal = _save(
        Proposal(
            discrepancy=discrepancy,
            kind=Proposal.Kind.INVOICE_FIX,
            amount=-size if over else size,
            currency=invoice.currency,
            reason=reason,
            proposed_by=actor,
            approvals_needed=2 if size > tenant.single_approval_limit else 1,
            connection=_writable_connection(invoice),
            invoice=invoice,
        )
    )
    audit_record(
        actor=actor,
        action="proposal.create",
        target=proposal,
        after={
            "kind": proposal.kind,
            "amount": proposal.amount,
            "invoice": invoice.external_id,
            "discrepancy": discrepancy.pk,
        },
        reason=reason,
    )
    return proposal


@transaction.atomic
def invoice_release_propose(*, actor: User, discrepancy: Discrepancy, reason: str = "") -> Proposal:
    """Propose to release the held invoice (Stripe: finalize; Chargebee: close the pending invoice).

    Releasing finalizes the invoice for good and sends it to the customer, so a finance approver
    other than the proposer confirms the draft is right first (one approver: the money was
    decided with each fix). Fixes still open would be lost, so they are decided first.
    """
    authorize_any(_role(actor), (Action.CHARGE_PROPOSE, Action.CREDIT_PROPOSE))
    invoice = _locked_invoice(discrepancy)
    _held(invoice)
    pending = Proposal.objects.filter(invoice=invoice, kind=Proposal.Kind.INVOICE_FIX, status__in=OPEN)
    if pending.exists():
        raise ValidationError(
            f"Invoice {invoice.external_id} has a correcting line not yet applied: "
            "it is approved or rejected and sent first."
        )
    proposal = _save(
        Proposal(
            discrepancy=discrepancy,
            kind=Proposal.Kind.INVOICE_RELEASE,
            amount=Decimal(0),
            currency=invoice.currency,
            reason=reason,
            proposed_by=actor,
            approvals_needed=1,
            connection=_writable_connection(invoice),
            invoice=invoice,
        )
    )
    audit_record(
        actor=actor,
        action="proposal.create",
        target=proposal,
        after={"kind": proposal.kind, "invoice": invoice.external_id, "discrepancy": discrepancy.pk},
        reason=reason,
    )
    return proposal
