"""Reading proposals: where a draft invoice stands between hold and release, for the discrepancy page."""

from __future__ import annotations

from dataclasses import dataclass, field

from apps.approvals.models import LIVE, Proposal
from apps.billing.models import Invoice, InvoiceStatus
from apps.reconciliation.models import Discrepancy
from apps.tenancy.models import Tenant

OPEN_STATUSES = (Proposal.Status.PROPOSED, Proposal.Status.APPROVED, Proposal.Status.FAILED)


def discrepancy_invoice(discrepancy: Discrepancy) -> Invoice | None:
    """The invoice the finding's line was billed on; failing that (a sync replaced the invoice's
    lines since), the invoice its earlier hold, fix or release named."""
    line = discrepancy.line
    if line.invoice_line_id is not None:
        return (
            Invoice.objects.filter(lines__pk=line.invoice_line_id, tenant_id=discrepancy.tenant_id)
            .select_related("account")
            .first()
        )
    named = Proposal.objects.filter(discrepancy=discrepancy, invoice__isnull=False).values("invoice")
    return Invoice.objects.filter(pk__in=named).select_related("account").first()


@dataclass
class InvoiceFlow:
    """A draft invoice on its way from hold to release, as the discrepancy page shows it."""

    invoice: Invoice
    finding: Discrepancy
    hold: Proposal | None = None
    release: Proposal | None = None
    fixes: list[Proposal] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return self.hold is not None and self.hold.status == Proposal.Status.EXECUTED

    @property
    def released(self) -> bool:
        return self.release is not None and self.release.status == Proposal.Status.EXECUTED

    @property
    def can_hold(self) -> bool:
        return self.invoice.status == InvoiceStatus.DRAFT and self.hold is None

    @property
    def fix_of_finding(self) -> Proposal | None:
        return next((p for p in self.fixes if p.discrepancy_id == self.finding.pk), None)

    @property
    def can_fix(self) -> bool:
        over = self.finding.direction == "over"
        return (
            self.held
            and self.release is None
            and self.fix_of_finding is None
            and self.finding.direction in ("over", "under")
            and not (over and self.invoice.source == "chargebee")  # no negative charge on a pending invoice
        )

    @property
    def fix_blocked_by_provider(self) -> bool:
        return self.held and self.finding.direction == "over" and self.invoice.source == "chargebee"

    @property
    def open_fixes(self) -> list[Proposal]:
        return [p for p in self.fixes if p.status in OPEN_STATUSES]

    @property
    def can_release(self) -> bool:
        return self.held and self.release is None and not self.open_fixes

    @property
    def visible(self) -> bool:
        """Worth a section: a draft that can still be held, or one Trueup already acted on."""
        return self.can_hold or self.hold is not None


def invoice_flow(tenant: Tenant, discrepancy: Discrepancy) -> InvoiceFlow | None:
    """Hold, fixes (of every finding on the invoice) and release of the finding's invoice, or None."""
    invoice = discrepancy_invoice(discrepancy)
    if invoice is None or invoice.tenant_id != tenant.pk:
        return None
    proposals = list(
        Proposal.objects.filter(tenant=tenant, invoice=invoice)
        .filter(LIVE)
        .select_related("proposed_by", "outbox", "discrepancy__meter")
        .prefetch_related("approvals__approver")
        .order_by("created_at", "pk")
    )
    flow = InvoiceFlow(invoice=invoice, finding=discrepancy)
    for proposal in proposals:
        if proposal.kind == Proposal.Kind.INVOICE_HOLD:
            flow.hold = proposal
        elif proposal.kind == Proposal.Kind.INVOICE_RELEASE:
            flow.release = proposal
        elif proposal.kind == Proposal.Kind.INVOICE_FIX:
            flow.fixes.append(proposal)
    return flow
