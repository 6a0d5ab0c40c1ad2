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
from zoneinfo import ZoneInfo

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from apps.approvals.models import Approval, OutboxMessage, Proposal
from apps.audit.services import audit_record
from apps.billing.models import Invoice, ProviderConnection
from apps.providers import base
from apps.providers.registry import provider_for
from apps.reconciliation.models import Discrepancy
from apps.reconciliation.services import discrepancy_change_status
from apps.tenancy.context import tenant_context, unscoped_context
from apps.tenancy.models import Membership, Tenant
from apps.tenancy.permissions import authorize
from apps.tenancy.roles import Action, role_can
from apps.users.models import User

log = logging.getLogger(__name__)
MAX_BACKOFF = dt.timedelta(hours=1)
DRAFT_INVOICE_KINDS = (
    Proposal.Kind.INVOICE_HOLD,
    Proposal.Kind.INVOICE_FIX,
    Proposal.Kind.INVOICE_RELEASE,
)
UNDER_WAY = (Proposal.Status.PROPOSED, Proposal.Status.APPROVED, Proposal.Status.FAILED)
FIX_KINDS = (
    Proposal.Kind.CREDIT_NOTE,
    Proposal.Kind.CATCH_UP_CHARGE,
    Proposal.Kind.WRITE_OFF,
    Proposal.Kind.INVOICE_FIX,
)


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
    """Propose the fix: a credit note for an over-bill, a catch-up charge or write-off for an under-bill,
    or a correcting line on the held draft invoice the finding was billed on."""
    if kind == Proposal.Kind.INVOICE_FIX:
        from apps.approvals.draft_invoices import invoice_fix_propose

        return invoice_fix_propose(actor=actor, discrepancy=discrepancy, amount=amount, reason=reason)
    if kind not in FIX_KINDS:
        raise ValidationError({"kind": f"Choose one of: {', '.join(k.label for k in FIX_KINDS)}."})
    authorize(
        _role(actor), Action.CREDIT_PROPOSE if kind == Proposal.Kind.CREDIT_NOTE else Action.CHARGE_PROPOSE
    )
    if kind == Proposal.Kind.CREDIT_NOTE and discrepancy.direction != "over":
        raise ValidationError({"kind": "A credit note fixes an over-bill."})
    if kind in (Proposal.Kind.CATCH_UP_CHARGE, Proposal.Kind.WRITE_OFF) and discrepancy.direction != "under":
        raise ValidationError({"kind": "A catch-up charge or a write-off fixes an under-bill."})
    Discrepancy.objects.select_for_update().filter(pk=discrepancy.pk).first()  # proposers in turn
    fixes = Proposal.objects.filter(discrepancy=discrepancy, kind__in=FIX_KINDS)
    under_way = fixes.filter(status__in=UNDER_WAY).first()
    if under_way is not None:
        raise ValidationError(
            f"This finding already has a {under_way.get_kind_display().lower()} proposal "
            f"({under_way.get_status_display().lower()}): it must be done, rejected or cancelled first."
        )
    done = fixes.filter(status=Proposal.Status.EXECUTED).aggregate(total=Sum("amount"))["total"] or 0
    gap = abs(discrepancy.amount) - done  # what earlier fixes left
    if gap <= 0:
        raise ValidationError("This finding has been fixed in full already.")
    amount = gap if amount is None else amount
    if amount <= 0 or amount > gap:
        left = " (what earlier fixes left)" if done else ""
        raise ValidationError(
            {"amount": f"The amount must be more than 0 and at most {gap} {discrepancy.currency}{left}."}
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


CANCELLABLE = UNDER_WAY


def proposal_cancel(*, actor: User, proposal: Proposal, reason: str) -> Proposal:
    """Stop a proposal that has not reached the provider: one waiting for approval (its proposer or
    a finance approver), or an approved one still being sent or failing (a finance approver).

    The outbox row is locked first, so a delivery starting now finds it cancelled. One already
    in flight at the provider may still succeed: then it is executed, which is what happened.
    """
    role = _role(actor)
    may_approve = role is not None and role_can(role, Action.PROPOSAL_APPROVE)
    if not may_approve and not (
        proposal.proposed_by_id == actor.pk and proposal.status == Proposal.Status.PROPOSED
    ):
        raise PermissionDenied(
            "Only a finance approver, or its proposer before approval, can cancel a proposal."
        )
    if not reason.strip():
        raise ValidationError({"reason": "Cancelling needs a reason."})
    with transaction.atomic():
        message = OutboxMessage.objects.select_for_update().filter(proposal_id=proposal.pk).first()
        locked = Proposal.objects.select_for_update().get(pk=proposal.pk)
        if locked.status not in CANCELLABLE or (message and message.status == OutboxMessage.Status.SENT):
            raise ValidationError(
                f"This proposal is {locked.get_status_display().lower()}: it cannot be cancelled."
            )
        before = locked.status
        locked.status = Proposal.Status.CANCELLED
        locked.save(update_fields=["status"])
        if message is not None:
            message.status = OutboxMessage.Status.CANCELLED
            message.save(update_fields=["status"])
        audit_record(
            actor=actor,
            action="proposal.cancel",
            target=locked,
            before={"status": before},
            after={"status": locked.status},
            reason=reason,
        )
        return locked


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
    # robust: a provider failure while sending (eagerly, without a broker) must not undo or break the
    # request that approved it; the outbox row keeps the error and the retry.
    transaction.on_commit(lambda: _enqueue(proposal.tenant_id, message.pk), robust=True)


def due_messages(now: dt.datetime | None = None, limit: int = 500) -> list[tuple[int, int]]:
    """(tenant id, message id) of approved actions due another attempt: failed ones whose backoff is
    over, and ones whose task was lost (no broker then, a worker gone, retries spent)."""
    with unscoped_context(reason="outbox sweep: find approved actions due at the provider"):
        return list(
            OutboxMessage.unscoped_objects.filter(
                status=OutboxMessage.Status.PENDING, next_attempt_at__lte=now or timezone.now()
            )
            .order_by("next_attempt_at")
            .values_list("tenant_id", "pk")[:limit]
        )


def _enqueue(tenant_id: int, message_id: int) -> None:
    from apps.approvals.tasks import deliver_outbox_message

    deliver_outbox_message.delay(tenant_id, message_id)


def invoice_of(finding: Discrepancy, provider: str) -> Invoice | None:
    """The provider's invoice the finding is about: the one of its line, else the account's invoice
    for the finding's month (in the account's time zone), else its latest."""
    line_invoice = getattr(getattr(finding.line, "invoice_line", None), "invoice", None)
    if line_invoice is not None and line_invoice.source == provider:
        return line_invoice
    invoices = list(
        Invoice.objects.filter(account=finding.account, source=provider).order_by("-period_start")
    )
    zone = ZoneInfo(finding.account.timezone or "UTC")
    of_period = [i for i in invoices if f"{i.period_start.astimezone(zone):%Y-%m}" == finding.period]
    return (of_period or invoices or [None])[0]


def _request(proposal: Proposal) -> tuple[str, object]:
    """What to send for the proposal: the same parameters on every attempt (the key must match them)."""
    finding = proposal.discrepancy
    provider_name = proposal.connection.provider  # type: ignore[union-attr]
    if proposal.kind in DRAFT_INVOICE_KINDS:
        invoice = proposal.invoice
        if invoice is None:
            raise base.ProviderError("the proposal names no invoice")
        if proposal.kind == Proposal.Kind.INVOICE_HOLD:
            return "hold", invoice.external_id
        if proposal.kind == Proposal.Kind.INVOICE_RELEASE:
            return "release", invoice.external_id
    else:
        invoice = invoice_of(finding, provider_name)
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
    customer = finding.account.external_ids.filter(provider=provider_name).first()
    if customer is None:
        raise base.ProviderError("the account has no customer id at the provider")
    if proposal.kind == Proposal.Kind.INVOICE_FIX:
        return "invoice_item", base.InvoiceItemRequest(
            customer=customer.external_id,
            amount=proposal.amount,  # signed: a negative line takes an over-bill off the draft
            currency=proposal.currency,
            description=f"Correction for {finding.period}: {finding.meter or 'base fee'}",
            invoice=proposal.invoice.external_id,  # type: ignore[union-attr]
        )
    return "invoice_item", base.InvoiceItemRequest(
        customer=customer.external_id,
        amount=proposal.amount,
        currency=proposal.currency,
        description=f"Usage correction for {finding.period}: {finding.meter or 'base fee'}",
    )


def _send(
    provider: base.BillingProvider, what: str, request: object, key: str
) -> tuple[str, dict[str, object]]:
    """One provider call: (the provider's reference, what to keep of its answer)."""
    if what == "credit_note":
        note = provider.create_credit_note(request, idempotency_key=key)  # type: ignore[arg-type]
        return note.id, {"credit_note": note.id, "amount": str(note.amount)}
    if what in ("hold", "release"):
        act = provider.hold_invoice if what == "hold" else provider.release_invoice
        invoice = act(str(request), idempotency_key=key)
        return invoice.id, {
            "invoice": invoice.id,
            "status": invoice.status,
            "auto_advance": invoice.auto_advance,
            "finalized_at": invoice.finalized_at.isoformat() if invoice.finalized_at else None,
            "total": str(invoice.total),
        }
    reference = provider.create_invoice_item(request, idempotency_key=key)  # type: ignore[arg-type]
    result: dict[str, object] = {"invoice_item": reference}
    if isinstance(request, base.InvoiceItemRequest) and request.invoice:
        result["invoice"] = request.invoice
    return reference, result


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
            "discrepancy__account", "discrepancy__meter", "connection", "invoice"
        ).get(pk=message.proposal_id)
        if proposal.connection is None:
            raise base.ProviderError("no provider connection for this account")
        what, request = _request(proposal)
        provider = provider_for(proposal.connection)
    try:
        reference, result = _send(provider, what, request, message.idempotency_key)
        if callable(after_provider_call):
            after_provider_call()  # tests: a worker dying right here, after the provider acted
    except base.ProviderError as exc:
        with tenant_context(tenant_id):
            OutboxMessage.objects.filter(pk=message.pk).update(last_error=str(exc)[:2000])
            # A person may have cancelled it meanwhile: that decision stands.
            Proposal.objects.filter(pk=proposal.pk).exclude(status=Proposal.Status.CANCELLED).update(
                status=Proposal.Status.FAILED
            )
        raise
    with tenant_context(tenant_id):
        # Pending, or cancelled while the provider was already acting: either way it happened, once.
        not_yet_recorded = (OutboxMessage.Status.PENDING, OutboxMessage.Status.CANCELLED)
        sent = OutboxMessage.objects.filter(pk=message.pk, status__in=not_yet_recorded).update(
            status=OutboxMessage.Status.SENT, sent_at=timezone.now(), result=result, last_error=""
        )
        if not sent:  # another delivery of the same message got there first and recorded it
            return OutboxMessage.objects.get(pk=message.pk)
        Proposal.objects.filter(pk=proposal.pk).update(
            status=Proposal.Status.EXECUTED, provider_reference=reference
        )
        audit_record(
            actor=None, action="proposal.executed", target=proposal, after={"kind": proposal.kind, **result}
        )
        if proposal.kind == Proposal.Kind.INVOICE_RELEASE:
            _invoice_released(proposal, result)
        elif proposal.kind != Proposal.Kind.INVOICE_HOLD:  # a hold protects the invoice; it fixes nothing
            discrepancy_change_status(
                discrepancy=proposal.discrepancy,
                actor=None,
                status=Discrepancy.Status.RESOLVED,
                reason=f"{proposal.get_kind_display()} {reference} issued at the provider",
            )
        return OutboxMessage.objects.get(pk=message.pk)


def _invoice_released(proposal: Proposal, result: dict[str, object]) -> None:
    """What the provider answered is the invoice's state now (the next sync says the same)."""
    finalized = result.get("finalized_at")
    Invoice.objects.filter(pk=proposal.invoice_id).update(
        status=str(result["status"]),
        finalized_at=dt.datetime.fromisoformat(str(finalized)) if finalized else timezone.now(),
        synced_at=timezone.now(),
    )
