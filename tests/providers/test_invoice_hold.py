"""A draft invoice with a wrong line: hold it, fix it, release it, once each at the provider.

Both sandboxes over HTTP through the official SDKs: Stripe (a draft: ``auto_advance=false``, an
invoice item on the draft, finalize) and Chargebee (a pending invoice: a charge added, close).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import TestCase
from django.urls import reverse

from apps.approvals.draft_invoices import invoice_fix_propose, invoice_hold, invoice_release_propose
from apps.approvals.models import OutboxMessage, Proposal
from apps.approvals.services import deliver, proposal_decide
from apps.audit.models import AuditEvent
from apps.billing.models import Invoice
from apps.billing.services import connection_create
from apps.providers.base import ProviderError
from apps.reconciliation.models import Discrepancy
from apps.tenancy.context import tenant_context
from apps.tenancy.models import Tenant
from apps.tenancy.roles import Role
from tests.conftest import member
from tests.factories import (
    AccountExternalIdFactory,
    AccountFactory,
    DiscrepancyFactory,
    InvoiceFactory,
    InvoiceLineFactory,
    MeterFactory,
    ReconciliationLineFactory,
)
from tests.providers.conftest import (
    chargebee_invoice,
    make_chargebee_provider,
    make_stripe_provider,
    stripe_sandbox_call,
)

pytestmark = pytest.mark.django_db
D = Decimal
UNDER = D("25.00")
FIX = "Correction for 2026-10"


@dataclass
class Draft:
    """A tenant whose provider holds a draft invoice on which API calls were under-billed."""

    provider: str
    tenant: Any
    sandbox: Any
    invoice: Any  # the local copy of the draft
    finding: Any
    people: dict[str, Any] = field(default_factory=dict)
    _client: Any = None

    @property
    def external_id(self) -> str:
        return str(self.invoice.external_id)

    def client(self) -> Any:
        if self._client is None:
            maker = make_stripe_provider if self.provider == "stripe" else make_chargebee_provider
            self._client = (
                maker(self.sandbox, meter_map={}) if self.provider == "stripe" else maker(self.sandbox)
            )
        return self._client

    def remote(self) -> Any:
        """The invoice as the provider has it now, read back through its SDK."""
        return self.client().get_invoice(self.external_id)

    def fix_lines(self) -> list[Any]:
        return [line for line in self.remote().lines if line.description.startswith(FIX)]

    def finalizations(self) -> int:
        """How many times the provider finalized (Stripe) / closed (Chargebee) the invoice."""
        if self.provider == "stripe":
            events = self.client().client.v1.events.list(params={"type": "invoice.finalized", "limit": 100})
            return sum(1 for e in events.data if e.data.object.id == self.external_id)
        return sum(
            1
            for e in self.sandbox.state.events.values()
            if e["event_type"] == "invoice_generated" and e["content"]["invoice"]["id"] == self.external_id
        )


def _stripe_draft(sandbox: Any, seeded: dict[str, Any], *, finalize: bool = False) -> str:
    params = {"customer": seeded["acme"], "subscription": seeded["sub"], "auto_advance": True}
    objects: list[dict[str, Any]] = [{"ref": "inv", "path": "/v1/invoices", "params": params}]
    if finalize:
        objects.append({"path": "/v1/invoices/$inv/finalize"})
    return str(stripe_sandbox_call(sandbox, "POST", "seed", {"objects": objects})["ids"]["inv"])


def build_draft(
    provider: str,
    tenant: Any,
    sandbox: Any,
    *,
    customer: str,
    invoice_id: str,
    status: str = "draft",
    direction: str = "under",
) -> Draft:
    account = AccountFactory(tenant=tenant, name="Acme Ltd")
    AccountExternalIdFactory(tenant=tenant, account=account, provider=provider, external_id=customer)
    meter = MeterFactory(tenant=tenant, key="api_calls", name="API calls")
    invoice = InvoiceFactory(
        tenant=tenant,
        account=account,
        source=provider,
        external_id=invoice_id,
        status=status,
        finalized_at=None if status == "draft" else InvoiceFactory.finalized_at,
    )
    invoice_line = InvoiceLineFactory(tenant=tenant, invoice=invoice, meter=meter, amount=D("80.00"))
    gap = UNDER if direction == "under" else -UNDER
    line = ReconciliationLineFactory(
        tenant=tenant,
        account=account,
        meter=meter,
        invoice_line=invoice_line,
        expected_amount=D("80.00") + gap,
        invoiced_amount=D("80.00"),
        billed_amount=D("80.00"),
        difference=gap,
        direction=direction,
        classification=f"{direction}_bill",
    )
    finding = DiscrepancyFactory(
        tenant=tenant,
        line=line,
        account=account,
        meter=meter,
        amount=gap,
        direction=direction,
        classification=f"{direction}_bill",
    )
    with tenant_context(tenant):
        connection = connection_create(
            actor=None,
            provider=provider,
            name="Sandbox",
            base_url=sandbox.url,
            site=getattr(sandbox, "site", ""),
            credentials={"api_key": sandbox.api_key},
        )
        connection.allow_writes = True
        connection.save(update_fields=["allow_writes"])
    Tenant.objects.filter(pk=tenant.pk).update(single_approval_limit=D("10.00"))  # 25.00: two approvers
    people = {
        "analyst": member(tenant, Role.FINANCE_ANALYST, full_name="Fiona Analyst"),
        "approver": member(tenant, Role.FINANCE_APPROVER, full_name="Paula Approver"),
        "approver2": member(tenant, Role.FINANCE_APPROVER, full_name="Quinn Approver"),
        "viewer": member(tenant, Role.VIEWER, full_name="Vic Viewer"),
    }
    return Draft(provider, tenant, sandbox, invoice, finding, people)


@pytest.fixture(params=["stripe", "chargebee"])
def draft(request: pytest.FixtureRequest, tenant_a: Any) -> Draft:
    if request.param == "stripe":
        sandbox = request.getfixturevalue("stripe_sandbox")
        seeded = request.getfixturevalue("stripe_seeded")
        return build_draft(
            "stripe", tenant_a, sandbox, customer=seeded["acme"], invoice_id=_stripe_draft(sandbox, seeded)
        )
    sandbox = request.getfixturevalue("chargebee_seeded")
    invoice_id = chargebee_invoice(sandbox, close=False)
    return build_draft("chargebee", tenant_a, sandbox, customer="acme", invoice_id=invoice_id)


@pytest.fixture
def stripe_draft(tenant_a: Any, stripe_sandbox: Any, stripe_seeded: dict[str, Any]) -> Draft:
    invoice_id = _stripe_draft(stripe_sandbox, stripe_seeded)
    return build_draft(
        "stripe", tenant_a, stripe_sandbox, customer=stripe_seeded["acme"], invoice_id=invoice_id
    )


def hold(draft: Draft) -> Proposal:
    """Hold as the analyst; the outbox sends it when the request commits (Celery runs eagerly)."""
    with TestCase.captureOnCommitCallbacks(execute=True), tenant_context(draft.tenant):
        proposal = invoice_hold(actor=draft.people["analyst"], discrepancy=draft.finding)
    with tenant_context(draft.tenant):
        proposal.refresh_from_db()
    return proposal


def approve(draft: Draft, proposal: Proposal, *who: str, send: bool = True) -> Proposal:
    for person in who:
        if send:
            with TestCase.captureOnCommitCallbacks(execute=True), tenant_context(draft.tenant):
                proposal_decide(actor=draft.people[person], proposal=proposal, approve=True)
        else:  # approved, but the worker has not picked the message up yet
            with tenant_context(draft.tenant):
                proposal_decide(actor=draft.people[person], proposal=proposal, approve=True)
    with tenant_context(draft.tenant):
        proposal.refresh_from_db()
    return proposal


def crash() -> None:
    raise SystemExit("worker killed")


def test_hold_fix_and_release_each_happen_once_at_the_provider(draft: Draft) -> None:
    before = draft.remote()
    assert before.status == "draft"

    held = hold(draft)
    assert held.status == "executed" and held.approvals_needed == 0, "a hold needs no approval"
    remote = draft.remote()
    assert remote.status == "draft"
    if draft.provider == "stripe":
        assert remote.auto_advance is False
        # an hour on, an auto-advancing draft would have finalized; the held one waits
        now = draft.client().client.v1.invoices.retrieve(draft.external_id).created
        stripe_sandbox_call(draft.sandbox, "POST", "clock", {"frozen_time": now})
        stripe_sandbox_call(draft.sandbox, "POST", "clock", {"frozen_time": now + 2 * 3600})
        assert draft.remote().status == "draft"
    with tenant_context(draft.tenant), pytest.raises(ValidationError, match="held already"):
        invoice_hold(actor=draft.people["approver"], discrepancy=draft.finding)

    with tenant_context(draft.tenant):
        fix = invoice_fix_propose(actor=draft.people["analyst"], discrepancy=draft.finding)
    assert (fix.kind, fix.amount, fix.approvals_needed) == ("invoice_fix", UNDER, 2)
    with tenant_context(draft.tenant), pytest.raises(PermissionDenied, match="may not approve"):
        proposal_decide(actor=draft.people["analyst"], proposal=fix, approve=True)
    with tenant_context(draft.tenant), pytest.raises(ValidationError, match="not yet applied"):
        invoice_release_propose(actor=draft.people["analyst"], discrepancy=draft.finding)
    assert approve(draft, fix, "approver").status == "proposed", "above the limit: two approvers"
    assert draft.fix_lines() == []
    fix = approve(draft, fix, "approver2")
    assert fix.status == "executed"
    assert [line.amount for line in draft.fix_lines()] == [UNDER]
    assert fix.provider_reference.startswith("ii_" if draft.provider == "stripe" else "li_")
    assert draft.remote().total == before.total + UNDER
    with tenant_context(draft.tenant):
        assert Discrepancy.objects.get().status == "resolved"

    with tenant_context(draft.tenant):
        release = invoice_release_propose(actor=draft.people["approver2"], discrepancy=draft.finding)
    assert release.approvals_needed == 1
    with tenant_context(draft.tenant), pytest.raises(PermissionDenied, match="own proposal"):
        proposal_decide(actor=draft.people["approver2"], proposal=release, approve=True)
    assert draft.remote().status == "draft", "nothing is released before a checker approves"
    release = approve(draft, release, "approver")
    assert release.status == "executed"
    remote = draft.remote()
    assert remote.status == "open" and remote.finalized_at is not None
    assert remote.total == before.total + UNDER and len(draft.fix_lines()) == 1
    assert draft.finalizations() == 1
    # finalizing again under another key (a release made outside the outbox): the same invoice, still once
    assert draft.client().release_invoice(draft.external_id, idempotency_key="again").status == "open"
    assert draft.finalizations() == 1
    with tenant_context(draft.tenant):
        local = Invoice.objects.get(pk=draft.invoice.pk)
        assert local.status == "open" and local.finalized_at is not None

    # released: final. No second release, no more fixes, nothing to hold.
    with tenant_context(draft.tenant):
        with pytest.raises(ValidationError, match="was released"):
            invoice_release_propose(actor=draft.people["approver"], discrepancy=draft.finding)
        with pytest.raises(ValidationError, match="was released"):
            invoice_fix_propose(actor=draft.people["approver"], discrepancy=draft.finding)
        with pytest.raises(ValidationError, match="only a draft invoice can be held"):
            invoice_hold(actor=draft.people["approver"], discrepancy=draft.finding)
        assert OutboxMessage.objects.count() == 3
        assert set(OutboxMessage.objects.values_list("status", flat=True)) == {"sent"}

        events = list(AuditEvent.objects.order_by("pk").values_list("action", "actor_id", "after"))
    people = {key: user.pk for key, user in draft.people.items()}
    steps = [
        (action, actor, (after or {}).get("kind"))
        for action, actor, after in events
        if action.startswith(("invoice.", "proposal."))
    ]
    assert steps == [
        ("invoice.hold", people["analyst"], None),
        ("proposal.executed", None, "invoice_hold"),
        ("proposal.create", people["analyst"], "invoice_fix"),
        ("proposal.approve", people["approver"], None),
        ("proposal.approve", people["approver2"], None),
        ("proposal.executed", None, "invoice_fix"),
        ("proposal.create", people["approver2"], "invoice_release"),
        ("proposal.approve", people["approver"], None),
        ("proposal.executed", None, "invoice_release"),
    ]


def test_a_worker_killed_after_each_provider_call_still_gives_one_line_and_one_finalize(draft: Draft) -> None:
    hold(draft)
    with tenant_context(draft.tenant):
        fix = invoice_fix_propose(actor=draft.people["analyst"], discrepancy=draft.finding)
    approve(draft, fix, "approver", "approver2", send=False)
    with tenant_context(draft.tenant):
        message = OutboxMessage.objects.get(proposal=fix)
    with pytest.raises(SystemExit):
        deliver(draft.tenant.pk, message.pk, after_provider_call=crash)
    assert len(draft.fix_lines()) == 1, "the provider acted before the worker died"
    with tenant_context(draft.tenant):
        assert OutboxMessage.objects.get(pk=message.pk).status == "pending", "not marked: it is retried"
    assert deliver(draft.tenant.pk, message.pk).status == "sent"
    assert deliver(draft.tenant.pk, message.pk).status == "sent"  # a late duplicate: nothing more
    assert len(draft.fix_lines()) == 1

    with tenant_context(draft.tenant):
        release = invoice_release_propose(actor=draft.people["analyst"], discrepancy=draft.finding)
    approve(draft, release, "approver", send=False)
    with tenant_context(draft.tenant):
        message = OutboxMessage.objects.get(proposal=release)
    with pytest.raises(SystemExit):
        deliver(draft.tenant.pk, message.pk, after_provider_call=crash)
    assert draft.remote().status == "open"
    assert deliver(draft.tenant.pk, message.pk).status == "sent"
    assert deliver(draft.tenant.pk, message.pk).status == "sent"
    assert draft.finalizations() == 1
    with tenant_context(draft.tenant):
        release.refresh_from_db()
        assert release.status == "executed"
        assert Invoice.objects.get(pk=draft.invoice.pk).status == "open"
    remote = draft.remote()
    assert remote.status == "open" and len(draft.fix_lines()) == 1


def test_a_fix_needs_the_hold_to_have_reached_the_provider(draft: Draft) -> None:
    with tenant_context(draft.tenant):
        with pytest.raises(ValidationError, match="Hold invoice"):
            invoice_fix_propose(actor=draft.people["analyst"], discrepancy=draft.finding)
        with pytest.raises(ValidationError, match="Hold invoice"):
            invoice_release_propose(actor=draft.people["analyst"], discrepancy=draft.finding)
        with pytest.raises(PermissionDenied):
            invoice_hold(actor=draft.people["viewer"], discrepancy=draft.finding)
    assert draft.remote().status == "draft"


def test_an_over_bill_on_a_stripe_draft_is_taken_off_with_a_negative_line(
    tenant_a: Any, stripe_sandbox: Any, stripe_seeded: dict[str, Any]
) -> None:
    invoice_id = _stripe_draft(stripe_sandbox, stripe_seeded)
    draft = build_draft(
        "stripe",
        tenant_a,
        stripe_sandbox,
        customer=stripe_seeded["acme"],
        invoice_id=invoice_id,
        direction="over",
    )
    before = draft.remote()
    hold(draft)
    with tenant_context(draft.tenant):
        with pytest.raises(ValidationError, match="needs a reason"):
            invoice_fix_propose(actor=draft.people["approver"], discrepancy=draft.finding, amount=D("5.00"))
        fix = invoice_fix_propose(
            actor=draft.people["approver"],
            discrepancy=draft.finding,
            amount=D("5.00"),
            reason="agreed 5 only",
        )
        assert (fix.amount, fix.approvals_needed) == (D("-5.00"), 1)
        with pytest.raises(PermissionDenied, match="own proposal"):  # maker-checker: never one's own
            proposal_decide(actor=draft.people["approver"], proposal=fix, approve=True)
    assert draft.fix_lines() == []
    approve(draft, fix, "approver2")
    assert [line.amount for line in draft.fix_lines()] == [D("-5.00")]
    assert draft.remote().total == before.total - D("5.00")


def test_chargebee_takes_no_negative_line_on_a_pending_invoice(tenant_a: Any, chargebee_seeded: Any) -> None:
    invoice_id = chargebee_invoice(chargebee_seeded, close=False)
    draft = build_draft(
        "chargebee", tenant_a, chargebee_seeded, customer="acme", invoice_id=invoice_id, direction="over"
    )
    hold(draft)
    with tenant_context(draft.tenant), pytest.raises(ValidationError, match="credit note"):
        invoice_fix_propose(actor=draft.people["analyst"], discrepancy=draft.finding)
    from apps.providers.base import InvoiceItemRequest

    request = InvoiceItemRequest("acme", D("-5.00"), "USD", "negative", invoice=invoice_id)
    with pytest.raises(ProviderError, match="less than 1"):  # and the sandbox refuses it like Chargebee
        draft.client().create_invoice_item(request, idempotency_key="neg-1")


def test_a_finalized_invoice_cannot_be_held(
    tenant_a: Any, stripe_sandbox: Any, stripe_seeded: dict[str, Any]
) -> None:
    invoice_id = _stripe_draft(stripe_sandbox, stripe_seeded, finalize=True)
    draft = build_draft(
        "stripe",
        tenant_a,
        stripe_sandbox,
        customer=stripe_seeded["acme"],
        invoice_id=invoice_id,
        status="open",
    )
    with tenant_context(draft.tenant), pytest.raises(ValidationError, match="only a draft invoice"):
        invoice_hold(actor=draft.people["analyst"], discrepancy=draft.finding)
    # finalized at the provider while our copy still said draft: the adapter refuses, and does not
    # switch off the open invoice's collection instead
    assert draft.remote().auto_advance is True
    with pytest.raises(ProviderError, match="not a draft"):
        draft.client().hold_invoice(invoice_id, idempotency_key="late-hold")
    assert draft.remote().auto_advance is True


def test_the_discrepancy_page_offers_hold_only_on_a_draft_and_shows_each_step(
    client: Any, stripe_draft: Draft, stripe_seeded: dict[str, Any]
) -> None:
    draft = stripe_draft
    page = reverse("discrepancy", args=[draft.tenant.slug, draft.finding.pk])
    slug, pk = draft.tenant.slug, draft.finding.pk

    def html(person: str) -> str:
        client.force_login(draft.people[person])
        response = client.get(page)
        assert response.status_code == 200
        return str(response.content.decode())

    shown = html("analyst")
    assert "Hold this draft invoice" in shown and draft.external_id in shown and '<select id="kind"' in shown
    assert "Hold this draft invoice" not in html("viewer"), "a viewer proposes nothing"

    client.force_login(draft.people["analyst"])
    with TestCase.captureOnCommitCallbacks(execute=True):
        client.post(reverse("invoice-hold", args=[slug, pk]))
    shown = html("analyst")
    assert "Hold this draft invoice" not in shown
    assert "<strong>Held</strong> since" in shown and "by Fiona Analyst" in shown
    assert "Propose the fix" in shown and "Propose releasing the invoice" in shown
    assert '<select id="kind"' not in shown, (
        "while held, the draft itself is fixed (not a next-invoice charge)"
    )

    client.post(reverse("propose", args=[slug, pk]), {"kind": "invoice_fix"})
    shown = html("analyst")
    assert "Correcting line on the draft invoice of 25.00 USD</strong> · Waiting for approval" in shown
    assert "Propose the fix" not in shown and "Propose releasing the invoice" not in shown
    assert 'value="approve"' not in shown, "an analyst proposes; finance approvers approve"
    with tenant_context(draft.tenant):
        fix = Proposal.objects.get(kind="invoice_fix")
    for person in ("approver", "approver2"):
        assert 'value="approve"' in html(person)
        with TestCase.captureOnCommitCallbacks(execute=True):
            client.post(reverse("proposal-decide", args=[slug, fix.pk]), {"decision": "approve"})
    shown = html("analyst")
    assert (
        "Correcting line on the draft invoice of 25.00 USD</strong> · Done" in shown and "<code>ii_" in shown
    )
    assert "Propose releasing the invoice" in shown

    client.post(reverse("invoice-release", args=[slug, pk]), {"reason": "fixed"})
    shown = html("analyst")
    assert "Release of the invoice</strong> · Waiting for approval" in shown
    assert "Release: waiting for approval." in shown
    html("approver")
    with tenant_context(draft.tenant):
        release = Proposal.objects.get(kind="invoice_release")
    with TestCase.captureOnCommitCallbacks(execute=True):
        client.post(reverse("proposal-decide", args=[slug, release.pk]), {"decision": "approve"})
    shown = html("analyst")
    assert "<strong>Released</strong>: finalized" in shown and "after approval by Paula Approver" in shown
    assert "Hold this draft invoice" not in shown and "Propose the fix" not in shown
    assert "Propose releasing the invoice" not in shown
    assert draft.remote().status == "open"

    # another finding, on an invoice finalized from the start: no hold on offer
    other_id = _stripe_draft(draft.sandbox, stripe_seeded, finalize=True)
    with tenant_context(draft.tenant):
        account = draft.finding.account
    invoice = InvoiceFactory(tenant=draft.tenant, account=account, source="stripe", external_id=other_id)
    line = ReconciliationLineFactory(
        tenant=draft.tenant,
        account=account,
        invoice_line=InvoiceLineFactory(tenant=draft.tenant, invoice=invoice),
    )
    finalized = DiscrepancyFactory(tenant=draft.tenant, line=line, period="2026-09")
    client.force_login(draft.people["analyst"])
    other = client.get(reverse("discrepancy", args=[slug, finalized.pk])).content.decode()
    assert "Hold this draft invoice" not in other and "Draft invoice" not in other
