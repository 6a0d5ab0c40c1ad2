from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.test import TestCase

from apps.accounts.models import Account
from apps.catalog.models import Plan, SubscriptionPhase, Tier
from apps.reconciliation.models import Discrepancy, ReconciliationRun
from apps.tenancy.context import unscoped_context
from apps.tenancy.models import Membership
from apps.tenancy.roles import Role

pytestmark = pytest.mark.django_db


def counts():
    with unscoped_context(reason="count the demo data"):
        return {
            model.__name__: model.objects.count()
            for model in (Account, Membership, Plan, Tier, SubscriptionPhase, ReconciliationRun, Discrepancy)
        }


def test_demo_setup_creates_a_login_per_role_and_is_safe_to_run_again():
    out = io.StringIO()
    with TestCase.captureOnCommitCallbacks(execute=True):
        call_command("demo_setup", stdout=out)
    first = counts()
    assert first["Account"] == 15 + 24 and first["ReconciliationRun"] == 1 and first["Discrepancy"] == 18
    printed = out.getvalue()
    for role in Role:
        assert str(role.label) in printed
    with TestCase.captureOnCommitCallbacks(execute=True):
        call_command("demo_setup", stdout=io.StringIO())
    assert counts() == first
