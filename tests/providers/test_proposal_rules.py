"""Rules of a fix after approval: a failing one stays visible and is retried (by its task and the
sweep) until it succeeds or a person cancels it (a finance approver, or the proposer before
approval); one money fix under way per finding, later ones only for what is left; a fix goes to
the invoice of the finding's month."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from apps.approvals.models import OutboxMessage, Proposal
from apps.approvals.services import deliver, proposal_cancel, proposal_create
from apps.audit.models import AuditEvent
from apps.providers.base import ProviderError
from apps.tenancy.context import tenant_context
from tests.providers.conftest import stripe_sandbox_call
from tests.providers.test_approvals_outbox import _approved, credit_notes, world  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def test_a_failing_credit_note_is_cancelled_and_never_sent(tenant_a, world, stripe_sandbox):  # noqa: F811
    message = _approved(tenant_a, world)
    stripe_sandbox_call(
        stripe_sandbox,
        "POST",
        "faults",
        {"path": "/v1/credit_notes", "method": "POST", "status": 500, "count": 5},
    )
    with pytest.raises(ProviderError):
        deliver(tenant_a.pk, message.pk)
    with tenant_context(tenant_a):
        proposal = Proposal.objects.get()
        assert proposal.status == "failed"
        with pytest.raises(PermissionDenied):  # the analyst proposed it; it is approved now
            proposal_cancel(actor=world["analyst"], proposal=proposal, reason="changed my mind")
        with pytest.raises(ValidationError, match="reason"):
            proposal_cancel(actor=world["approver2"], proposal=proposal, reason=" ")
        proposal_cancel(actor=world["approver2"], proposal=proposal, reason="Customer disputes the amount")
    stripe_sandbox_call(stripe_sandbox, "DELETE", "faults")
    assert deliver(tenant_a.pk, message.pk).status == "cancelled"  # a retry finds it cancelled
    assert credit_notes(stripe_sandbox) == []
    with tenant_context(tenant_a):
        assert Proposal.objects.get().status == "cancelled"
        event = AuditEvent.objects.get(action="proposal.cancel")
        assert event.actor == world["approver2"] and event.reason == "Customer disputes the amount"


def test_the_proposer_may_withdraw_before_approval_but_not_after_it_was_sent(
    tenant_a,
    world,  # noqa: F811
    stripe_sandbox,
):
    with tenant_context(tenant_a):
        proposal = proposal_create(actor=world["analyst"], discrepancy=world["finding"], kind="credit_note")
        proposal_cancel(actor=world["analyst"], proposal=proposal, reason="Wrong finding")
        assert Proposal.objects.get(pk=proposal.pk).status == "cancelled"
        assert not OutboxMessage.objects.exists()
    message = _approved(tenant_a, world)
    assert deliver(tenant_a.pk, message.pk).status == "sent"
    with tenant_context(tenant_a):
        sent = Proposal.objects.get(pk=message.proposal_id)
        with pytest.raises(ValidationError, match="cannot be cancelled"):
            proposal_cancel(actor=world["approver"], proposal=sent, reason="too late")
    assert len(credit_notes(stripe_sandbox)) == 1


def test_the_page_offers_cancel_to_an_approver_and_never_approval_to_the_proposer(
    client,
    tenant_a,
    world,  # noqa: F811
):
    with tenant_context(tenant_a):
        proposal = proposal_create(actor=world["approver"], discrepancy=world["finding"], kind="credit_note")
    url = reverse("discrepancy", kwargs={"tenant_slug": tenant_a.slug, "discrepancy_id": world["finding"].pk})
    client.force_login(world["approver"])
    page = client.get(url).content.decode()
    assert "You proposed this" in page and 'value="approve"' not in page
    assert (
        reverse("proposal-cancel", kwargs={"tenant_slug": tenant_a.slug, "proposal_id": proposal.pk}) in page
    )
    client.force_login(world["csm"])
    page = client.get(url).content.decode()
    assert 'value="approve"' not in page and "Cancel it" not in page
    cancel = reverse("proposal-cancel", kwargs={"tenant_slug": tenant_a.slug, "proposal_id": proposal.pk})
    refused = client.post(cancel, {"reason": "no"}, follow=True).content.decode()
    assert "Only a finance approver, or its proposer before approval, can cancel" in refused
    with tenant_context(tenant_a):
        assert Proposal.objects.get(pk=proposal.pk).status == "proposed"


def test_the_sweep_retries_a_failed_delivery_until_it_succeeds(tenant_a, world, stripe_sandbox):  # noqa: F811
    import datetime as dt

    from django.utils import timezone

    from apps.approvals.services import due_messages
    from apps.approvals.tasks import sweep_outbox

    message = _approved(tenant_a, world)
    stripe_sandbox_call(
        stripe_sandbox,
        "POST",
        "faults",
        {"path": "/v1/credit_notes", "method": "POST", "status": 500, "count": 1},
    )
    with pytest.raises(ProviderError):
        deliver(tenant_a.pk, message.pk)
    assert due_messages() == []  # backing off
    later = timezone.now() + dt.timedelta(hours=2)
    assert due_messages(now=later) == [(tenant_a.pk, message.pk)]
    with tenant_context(tenant_a):
        OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    assert sweep_outbox() == 1  # tasks run in-process here: delivered now
    assert len(credit_notes(stripe_sandbox)) == 1
    with tenant_context(tenant_a):
        assert Proposal.objects.get().status == "executed"
    assert due_messages(now=later) == []


def test_after_a_partial_credit_only_what_is_left_can_be_credited(tenant_a, world, stripe_sandbox):  # noqa: F811
    from decimal import Decimal

    from apps.approvals.services import proposal_decide

    with tenant_context(tenant_a):
        first = proposal_create(
            actor=world["analyst"],
            discrepancy=world["finding"],
            kind="credit_note",
            amount=Decimal("10.00"),
            reason="the customer agreed to keep 30 as a prepayment",
        )
        with pytest.raises(ValidationError, match="already has a credit note proposal"):
            proposal_create(actor=world["csm"], discrepancy=world["finding"], kind="credit_note")
        proposal_decide(actor=world["approver"], proposal=first, approve=True)
    with tenant_context(tenant_a):
        message = OutboxMessage.objects.get(proposal=first)
    assert deliver(tenant_a.pk, message.pk).status == "sent"
    with tenant_context(tenant_a):
        with pytest.raises(ValidationError, match=r"at most 30\.00"):
            proposal_create(
                actor=world["analyst"],
                discrepancy=world["finding"],
                kind="credit_note",
                amount=Decimal("40.00"),
                reason="again",
            )
        rest = proposal_create(actor=world["analyst"], discrepancy=world["finding"], kind="credit_note")
        assert rest.amount == Decimal("30.00")


def test_a_fix_goes_to_the_invoice_of_the_findings_month(tenant_a):
    import datetime as dt
    from zoneinfo import ZoneInfo

    from apps.approvals.services import invoice_of
    from tests.factories import AccountFactory, DiscrepancyFactory, InvoiceFactory

    account = AccountFactory(tenant=tenant_a, timezone="Asia/Tokyo")
    tokyo = ZoneInfo("Asia/Tokyo")
    august, october = (
        InvoiceFactory(
            tenant=tenant_a,
            account=account,
            source="stripe",
            period_start=dt.datetime(2026, month, 1, tzinfo=tokyo),
            period_end=dt.datetime(2026, month + 1, 1, tzinfo=tokyo),
        )
        for month in (8, 10)
    )
    with tenant_context(tenant_a):
        in_august = DiscrepancyFactory(tenant=tenant_a, account=account, period="2026-08")
        assert invoice_of(in_august, "stripe") == august
        later = DiscrepancyFactory(tenant=tenant_a, account=account, period="2026-12")
        assert invoice_of(later, "stripe") == october  # no invoice for December yet: the latest
        assert invoice_of(in_august, "chargebee") is None
