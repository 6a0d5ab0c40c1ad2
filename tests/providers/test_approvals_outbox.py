"""Maker-checker, and one credit note at the provider whatever happens: double clicks, crashes, 500s."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import TestCase

from apps.approvals.models import OutboxMessage, Proposal
from apps.approvals.services import deliver, proposal_create, proposal_decide
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
    ReconciliationLineFactory,
)
from tests.providers.conftest import make_stripe_provider, stripe_sandbox_call
from tests.providers.test_stripe_read import _invoice

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def world(tenant_a, stripe_sandbox, stripe_seeded) -> dict[str, Any]:
    account = AccountFactory(tenant=tenant_a, name="Acme Ltd")
    AccountExternalIdFactory(
        tenant=tenant_a, account=account, provider="stripe", external_id=stripe_seeded["acme"]
    )
    invoice_id = _invoice(stripe_sandbox, stripe_seeded["acme"], stripe_seeded["sub"], finalize=True)
    InvoiceFactory(tenant=tenant_a, account=account, source="stripe", external_id=invoice_id)
    line = ReconciliationLineFactory(
        tenant=tenant_a, account=account, difference=D("-40.00"), direction="over", classification="over_bill"
    )
    finding = DiscrepancyFactory(
        tenant=tenant_a,
        line=line,
        account=account,
        amount=D("-40.00"),
        direction="over",
        classification="over_bill",
    )
    with tenant_context(tenant_a):
        connection = connection_create(
            actor=None,
            provider="stripe",
            name="Sandbox",
            base_url=stripe_sandbox.url,
            credentials={"api_key": stripe_sandbox.api_key},
        )
        connection.allow_writes = True
        connection.save(update_fields=["allow_writes"])
    return {
        "finding": finding,
        "invoice": invoice_id,
        "analyst": member(tenant_a, Role.FINANCE_ANALYST),
        "approver": member(tenant_a, Role.FINANCE_APPROVER),
        "approver2": member(tenant_a, Role.FINANCE_APPROVER),
        "csm": member(tenant_a, Role.CSM),
    }


def credit_notes(server) -> list[Any]:
    return list(make_stripe_provider(server).list_credit_notes().items)


def test_maker_checker_rules(tenant_a, world):
    with tenant_context(tenant_a):
        with pytest.raises(ValidationError, match="needs a reason"):
            proposal_create(
                actor=world["analyst"], discrepancy=world["finding"], kind="credit_note", amount=D(10)
            )
        proposal = proposal_create(actor=world["approver"], discrepancy=world["finding"], kind="credit_note")
        assert proposal.amount == D("40.00"), "a credit note is for exactly the over-billed amount"
        with pytest.raises(PermissionDenied, match="own proposal"):
            proposal_decide(actor=world["approver"], proposal=proposal, approve=True)
        with pytest.raises(PermissionDenied):
            proposal_decide(actor=world["csm"], proposal=proposal, approve=True)
        with pytest.raises(ValidationError, match="needs a reason"):
            proposal_decide(actor=world["approver2"], proposal=proposal, approve=False)
        proposal_decide(
            actor=world["approver2"], proposal=proposal, approve=False, reason="contract allows it"
        )
        proposal.refresh_from_db()
        assert proposal.status == "rejected" and not OutboxMessage.objects.exists()


def test_above_the_limit_two_distinct_approvers_are_needed_and_one_credit_note_is_issued(
    tenant_a, world, stripe_sandbox
):
    Tenant.objects.filter(pk=tenant_a.pk).update(single_approval_limit=D("25.00"))
    with tenant_context(tenant_a):
        proposal = proposal_create(actor=world["analyst"], discrepancy=world["finding"], kind="credit_note")
        assert proposal.approvals_needed == 2
    with TestCase.captureOnCommitCallbacks(execute=True), tenant_context(tenant_a):
        proposal_decide(actor=world["approver"], proposal=proposal, approve=True)
    with tenant_context(tenant_a):
        proposal.refresh_from_db()
        assert proposal.status == "proposed", "one approval is not enough above the limit"
        with pytest.raises(ValidationError, match="already decided"):  # a double click
            proposal_decide(actor=world["approver"], proposal=proposal, approve=True)
    with TestCase.captureOnCommitCallbacks(execute=True), tenant_context(tenant_a):
        proposal_decide(actor=world["approver2"], proposal=proposal, approve=True)
    with tenant_context(tenant_a):
        proposal.refresh_from_db()
        assert proposal.status == "executed" and proposal.provider_reference.startswith("cn_")
        assert Discrepancy.objects.get().status == "resolved"
    notes = credit_notes(stripe_sandbox)
    assert len(notes) == 1 and notes[0].amount == D("40.00") and notes[0].invoice == world["invoice"]


def _approved(tenant_a, world) -> OutboxMessage:
    with tenant_context(tenant_a):
        proposal = proposal_create(actor=world["analyst"], discrepancy=world["finding"], kind="credit_note")
        proposal_decide(
            actor=world["approver"], proposal=proposal, approve=True
        )  # no commit hook: sent below
        return OutboxMessage.objects.get(proposal=proposal)


def test_a_worker_killed_after_the_provider_call_still_makes_one_credit_note(tenant_a, world, stripe_sandbox):
    message = _approved(tenant_a, world)

    def crash() -> None:
        raise SystemExit("worker killed")

    with pytest.raises(SystemExit):
        deliver(tenant_a.pk, message.pk, after_provider_call=crash)
    with tenant_context(tenant_a):
        assert OutboxMessage.objects.get(pk=message.pk).status == "pending", "not marked: it will be retried"
    assert deliver(tenant_a.pk, message.pk).status == "sent"
    assert deliver(tenant_a.pk, message.pk).status == "sent"  # and again: nothing more is sent
    assert len(credit_notes(stripe_sandbox)) == 1


def test_provider_500s_retry_and_stay_visible_until_sent(tenant_a, world, stripe_sandbox):
    message = _approved(tenant_a, world)
    stripe_sandbox_call(
        stripe_sandbox,
        "POST",
        "faults",
        {"path": "/v1/credit_notes", "method": "POST", "status": 500, "count": 1},
    )
    with pytest.raises(ProviderError):
        deliver(tenant_a.pk, message.pk)
    with tenant_context(tenant_a):
        failed = OutboxMessage.objects.get(pk=message.pk)
        assert failed.status == "pending" and failed.attempts == 1 and failed.last_error
        assert Proposal.objects.get().status == "failed"
    assert deliver(tenant_a.pk, message.pk).status == "sent"
    with tenant_context(tenant_a):
        assert Proposal.objects.get().status == "executed"
    assert len(credit_notes(stripe_sandbox)) == 1


def test_from_the_discrepancy_page_propose_see_the_providers_preview_and_approve(
    client, tenant_a, world, stripe_sandbox
):
    from django.urls import reverse

    page = reverse("discrepancy", args=[tenant_a.slug, world["finding"].pk])
    client.force_login(world["analyst"])
    client.post(reverse("propose", args=[tenant_a.slug, world["finding"].pk]), {"kind": "credit_note"})
    html = client.get(page).content.decode()
    assert "Credit note of 40.00 USD" in html and "would issue a credit note of 40.00 USD" in html
    assert "Approve" not in html, "an analyst proposes; only finance approvers approve"
    client.force_login(world["approver"])
    with tenant_context(tenant_a):
        proposal = Proposal.objects.get()
    with TestCase.captureOnCommitCallbacks(execute=True):
        client.post(reverse("proposal-decide", args=[tenant_a.slug, proposal.pk]), {"decision": "approve"})
    html = client.get(page).content.decode()
    assert "Done" in html and "cn_" in html
    assert len(credit_notes(stripe_sandbox)) == 1


def test_holds_and_releases_are_not_proposed_as_fixes(tenant_a, world):
    """They have their own services (tests/providers/test_invoice_hold.py); a fix on a draft needs a hold."""
    with tenant_context(tenant_a):
        for kind in ("invoice_hold", "invoice_release", "nonsense"):
            with pytest.raises(ValidationError, match="Choose one of"):
                proposal_create(actor=world["analyst"], discrepancy=world["finding"], kind=kind)
        with pytest.raises(
            ValidationError, match="no invoice from a provider"
        ):  # the finding's line is on none
            proposal_create(actor=world["analyst"], discrepancy=world["finding"], kind="invoice_fix")
        assert not Proposal.objects.exists()
