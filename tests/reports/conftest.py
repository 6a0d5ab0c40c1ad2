from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.test import TestCase

from apps.reconciliation.bundle_import import bundle_import
from apps.reconciliation.core import Month
from apps.reconciliation.models import ReconciliationRun
from apps.reconciliation.services import run_create
from apps.tenancy.context import tenant_context

DATA = Path(__file__).resolve().parents[1] / "data"
BUNDLE = DATA / "bundle-2026-10"
EXPECTED_LINES = json.loads((DATA / "bundle-2026-10.expected.json").read_text())["lines"]
ERRORS = ("under_bill", "over_bill", "proration")


def expected_total(*, currency: str = "USD", classes: tuple[str, ...], direction: str) -> Decimal:
    """What a correct reconciliation of the worked example finds, from its expected output (the oracle)."""
    return sum(
        (
            abs(Decimal(line["difference"]))
            for line in EXPECTED_LINES
            if line["currency"] == currency
            and line["classification"] in classes
            and line["direction"] == direction
        ),
        Decimal(0),
    )


def expected_count(*, currency: str = "USD", classes: tuple[str, ...], direction: str | None = None) -> int:
    return sum(
        1
        for line in EXPECTED_LINES
        if line["currency"] == currency
        and line["classification"] in classes
        and (direction is None or line["direction"] == direction)
    )


def figure(page: str, name: str) -> str:
    """The text of a headline figure (``data-figure="name"``), without its unit."""
    found = re.search(rf'data-figure="{name}">([^<]*)', page)
    assert found, f"no {name} figure on the page"
    return found.group(1).strip()


def reconcile_bundle(tenant: Any) -> ReconciliationRun:
    """Load the worked-example bundle into ``tenant`` and reconcile 2026-10, as the upload screen does."""
    with TestCase.captureOnCommitCallbacks(execute=True), tenant_context(tenant):
        bundle_import(path=BUNDLE, month=Month.parse("2026-10"), actor=None)
        run = run_create(actor=None, period="2026-10", trigger=ReconciliationRun.Trigger.BUNDLE)
    with tenant_context(tenant):
        run.refresh_from_db()
    assert run.status == ReconciliationRun.Status.SUCCEEDED, run.error
    return run


@pytest.fixture
def reconciled_a(tenant_a: Any) -> ReconciliationRun:
    return reconcile_bundle(tenant_a)
