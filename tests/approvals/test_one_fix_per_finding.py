"""One over-bill of 40.00, one credit note of 40.00: a finding with a fix waiting takes no second one."""

from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.test import TestCase

from apps.approvals.services import proposal_create, proposal_decide
from apps.tenancy.context import tenant_context
from tests.approvals.world import credit_notes

pytestmark = pytest.mark.django_db


def test_two_people_proposing_the_same_credit_note_do_not_credit_the_customer_twice(world, stripe_sandbox):
    made = []
    with tenant_context(world.tenant):
        made.append(
            proposal_create(actor=world.people["analyst"], discrepancy=world.finding, kind="credit_note")
        )
        with contextlib.suppress(ValidationError):  # a CSM, on the same over-bill, a minute later
            made.append(
                proposal_create(actor=world.people["csm"], discrepancy=world.finding, kind="credit_note")
            )
    for proposal in made:
        with TestCase.captureOnCommitCallbacks(execute=True), tenant_context(world.tenant):
            proposal_decide(actor=world.people["approver"], proposal=proposal, approve=True)
    notes = credit_notes(stripe_sandbox)
    assert sum(n.amount for n in notes) == Decimal("40.00"), [(n.id, n.amount) for n in notes]
    assert len(made) == 1, "the second proposal should have been refused"
