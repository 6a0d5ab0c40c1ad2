"""Proposing a fix, approving it (maker-checker), and carrying it out at the provider exactly once.

Exactly once: approval writes an outbox row in the same transaction, with an idempotency
key derived from the proposal. The delivery task sends the action with that key; if the
worker dies after the provider acted, the next attempt sends the same key and the provider
answers with the action it already took. Failures retry with backoff and stay visible.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.approvals.models import Approval, OutboxMessage, Proposal
from apps.audit.services import audit_record
from apps.billing.models import Invoice, ProviderConnection
from apps.providers import base
from apps.providers.registry import provider_for
from apps.reconciliation.models import Discrepancy
from apps.reconciliation.services import discrepancy_change_status
from apps.tenancy.context import tenant_context
from apps.tenancy.models import Membership, Tenant
from apps.tenancy.permissions import authorize
from apps.tenancy.roles import Action
from apps.users.models import User

log = logging.getLogger(__name__)
MAX_BACKOFF = dt.timedelta(hours=1)


def _role(user: User) -> str | None:
    membership = Membership.objects.filter(user=user).first()
    return membership.role if membership else None


@transaction.atomic
def proposal_create(
    *,
    actor: User,
    discrepancy: Discrepancy,
    kind: str,
    amount: Decimal | None = None,
    reason: str = "",
    customer_note: str = "",
) -> Proposal:
    """Propose the fix: a credit note for an over-bill, a catch-up charge or write-off for an under-bill."""
    if kind not in Proposal.Kind.values:
        raise ValidationError({"kind": f"Choose one of: {', '.join(Proposal.Kind.labels)}."})
    authorize(
        _role(actor), Action.CREDIT_PROPOSE if kind == Proposal.Kind.CREDIT_NOTE else Action.CHARGE_PROPOSE
    )
    gap = abs(discrepancy.amount)
    if kind == Proposal.Kind.CREDIT_NOTE and discrepancy.direction != "over":
        raise ValidationError({"kind": "A credit note fixes an over-bill."})
    if kind in (Proposal.Kind.CATCH_UP_CHARGE, Proposal.Kind.WRITE_OFF) and discrepancy.direction != "under":
        raise ValidationError({"kind": "A catch-up charge or a write-off fixes an under-bill."})
    amount = gap if amount is None else amount
    if amount <= 0 or amount > gap:
        raise ValidationError(
            {"amount": f"The amount must be more than 0 and at most {gap} {discrepancy.currency}."}
        )
    if amount < gap and not reason.strip():
        raise ValidationError({"reason": "Proposing less than the difference needs a reason."})
    if kind == Proposal.Kind.WRITE_OFF and not reason.strip():
        raise ValidationError({"reason": "A write-off needs a reason."})
    tenant = Tenant.objects.get(pk=discrepancy.tenant_id)
    proposal = Proposal(
        discrepancy=discrepancy,
        kind=kind,
        amount=amount,
        currency=discrepancy.currency,
        reason=reason,
        customer_note=customer_note,
        proposed_by=actor,
        approvals_needed=2 if amount > tenant.single_approval_limit else 1,
        connection=ProviderConnection.objects.filter(
            provider__in=Invoice.objects.filter(account=discrepancy.account).values("source")
        ).first(),
    )
    proposal.save()
    audit_record(
        actor=actor,
        action="proposal.create",
        target=proposal,
        after={"kind": kind, "amount": amount, "discrepancy": discrepancy.pk},
        reason=reason,
    )
    return proposal


def proposal_decide(*, actor: User, proposal: Proposal, approve: bool, reason: str = "") -> Proposal:
    """Approve or reject. Only finance approvers, never the proposer, each approver once."""
    authorize(_role(actor), Action.PROPOSAL_APPROVE)
    if proposal.proposed_by_id == actor.pk:
        raise PermissionDenied("Whoever proposes cannot approve their own proposal.")
    if not approve and not reason.strip():
        raise ValidationError({"reason": "A rejection needs a reason."})
    try:
        with transaction.atomic():
            locked = Proposal.objects.select_for_update().get(
                pk=proposal.pk
            )  # two approvers at once: in turn
            if locked.status != Proposal.Status.PROPOSED:
                raise ValidationError(f"This proposal is {locked.get_status_display().lower()} already.")
            Approval.objects.create(proposal=locked, approver=actor, approved=approve, reason=reason)
            audit_record(
                actor=actor,
                action="proposal.approve" if approve else "proposal.reject",
                target=locked,
                reason=reason,
            )
            if not approve:
                locked.status = Proposal.Status.REJECTED
            elif locked.approvals.filter(approved=True).count() >= locked.approvals_needed:
                locked.status = Proposal.Status.APPROVED
                _queue(locked)
            locked.save(update_fields=["status"])
            return locked
    except IntegrityError as exc:  # a double click: the same approver's second decision
        raise ValidationError("You have already decided on this proposal.") from exc


def _queue(proposal: Proposal) -> None:
    if proposal.kind == Proposal.Kind.WRITE_OFF:  # nothing to send: the decision is the action
        proposal.status = Proposal.Status.EXECUTED
        discrepancy_change_status(
            discrepancy=proposal.discrepancy,
            actor=None,
            status=Discrepancy.Status.RESOLVED,
            reason=f"written off: {proposal.reason}",
        )
        return
    message = OutboxMessage.objects.create(
        proposal=proposal,
        idempotency_key=f"trueup-{proposal.tenant_id}-proposal-{proposal.pk}-{proposal.kind}",
    )
    transaction.on_commit(lambda: _enqueue(proposal.tenant_id, message.pk))


def _enqueue(tenant_id: int, message_id: int) -> None:
    from apps.approvals.tasks import deliver_outbox_message

    deliver_outbox_message.delay(tenant_id, message_id)


def _request(proposal: Proposal) -> tuple[str, object]:
    finding = proposal.discrepancy
    invoice = (
        Invoice.objects.filter(
            account=finding.account,
            source=proposal.connection.provider,  # type: ignore[union-attr]
        )
        .order_by("-period_start")
        .first()
    )
    if proposal.kind == Proposal.Kind.CREDIT_NOTE:
        if invoice is None:
            raise base.ProviderError("no invoice of this account at the provider to credit")
        return "credit_note", base.CreditNoteRequest(
            invoice=invoice.external_id,
            reason=proposal.reason or "billing correction",
            memo=proposal.customer_note,
            lines=(
                base.CreditNoteLine(
                    invoice_line=None,
                    meter=finding.meter.key if finding.meter else None,
                    amount=proposal.amount,
                ),
            ),
        )
    customer = finding.account.external_ids.filter(provider=proposal.connection.provider).first()  # type: ignore[union-attr]
    if customer is None:
        raise base.ProviderError("the account has no customer id at the provider")
    return "invoice_item", base.InvoiceItemRequest(
        customer=customer.external_id,
        amount=proposal.amount,
        currency=proposal.currency,
        description=f"Usage correction for {finding.period}: {finding.meter or 'base fee'}",
    )


def deliver(tenant_id: int, message_id: int, *, after_provider_call: object = None) -> OutboxMessage:
    """Send one outbox message. Safe to run any number of times, concurrently or after a crash."""
    with tenant_context(tenant_id):
        message = OutboxMessage.objects.select_for_update(skip_locked=True).filter(pk=message_id).first()
        if message is None or message.status != OutboxMessage.Status.PENDING:
            return message or OutboxMessage.objects.get(pk=message_id)
        message.attempts += 1
        message.next_attempt_at = timezone.now() + min(
            MAX_BACKOFF, dt.timedelta(seconds=30 * 2**message.attempts)
        )
        message.save(update_fields=["attempts", "next_attempt_at"])
        proposal = Proposal.objects.select_related(
            "discrepancy__account", "discrepancy__meter", "connection"
        ).get(pk=message.proposal_id)
        if proposal.connection is None:
            raise base.ProviderError("no provider connection for this account")
        what, request = _request(proposal)
        provider = provider_for(proposal.connection)
    try:
        if what == "credit_note":
            note = provider.create_credit_note(request, idempotency_key=message.idempotency_key)  # type: ignore[arg-type]
            reference, result = note.id, {"credit_note": note.id, "amount": str(note.amount)}
        else:
            reference = provider.create_invoice_item(request, idempotency_key=message.idempotency_key)  # type: ignore[arg-type]
            result = {"invoice_item": reference}
        if callable(after_provider_call):
            after_provider_call()  # tests: a worker dying right here, after the provider acted
    except base.ProviderError as exc:
        with tenant_context(tenant_id):
            OutboxMessage.objects.filter(pk=message.pk).update(last_error=str(exc)[:2000])
            Proposal.objects.filter(pk=proposal.pk).update(status=Proposal.Status.FAILED)
        raise
    with tenant_context(tenant_id):
        OutboxMessage.objects.filter(pk=message.pk).update(
            status=OutboxMessage.Status.SENT, sent_at=timezone.now(), result=result, last_error=""
        )
        Proposal.objects.filter(pk=proposal.pk).update(
            status=Proposal.Status.EXECUTED, provider_reference=reference
        )
        audit_record(actor=None, action="proposal.executed", target=proposal, after=result)
        discrepancy_change_status(
            discrepancy=proposal.discrepancy,
            actor=None,
            status=Discrepancy.Status.RESOLVED,
            reason=f"{proposal.get_kind_display()} {reference} issued at the provider",
        )
        return OutboxMessage.objects.get(pk=message.pk)
