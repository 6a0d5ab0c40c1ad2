"""A bundle imported into a tenant reconciles, in the database, to the same lines as the bundle command."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import TestCase

from apps.billing.models import Invoice
from apps.reconciliation.models import Discrepancy, ReconciliationLine, ReconciliationRun
from apps.tenancy.context import tenant_context
from apps.usage.models import UsageEvent

pytestmark = pytest.mark.django_db
DATA = Path(__file__).resolve().parents[1] / "data"
FIELDS = (
    "account_id",
    "meter",
    "currency",
    "expected_amount",
    "billed_amount",
    "difference",
    "classification",
    "direction",
    "source",
)


def _money(value, currency):
    from apps.pricing import quantize

    return str(quantize(value, currency))


def test_import_then_reconcile_in_the_database_matches_the_expected_output(tenant_a):
    out = io.StringIO()
    with TestCase.captureOnCommitCallbacks(execute=True):
        call_command(
            "import_bundle",
            str(DATA / "bundle-2026-10"),
            "--tenant",
            tenant_a.slug,
            "--reconcile",
            stdout=out,
        )
    printed = out.getvalue()
    assert (
        "for 2026-10" in printed and "4 unreadable rows skipped" in printed and "events.csv line" in printed
    )
    expected = json.loads((DATA / "bundle-2026-10.expected.json").read_text())
    with tenant_context(tenant_a):
        run = ReconciliationRun.objects.get()
        assert run.status == "succeeded" and run.trigger == "bundle"
        got = []
        for line in ReconciliationLine.objects.filter(run=run).select_related("account", "meter"):
            row = {
                "account_id": line.account.key,
                "meter": line.meter.key if line.meter else None,
                "currency": line.currency,
                "classification": line.classification,
                "direction": line.direction,
                "source": line.source or None,
            }
            for name in ("expected_amount", "billed_amount", "difference"):
                row[name] = _money(getattr(line, name), line.currency)
            got.append(row)
    key = lambda row: (row["account_id"], row["meter"] is not None, row["meter"] or "")  # noqa: E731
    want = sorted(({k: line[k] for k in FIELDS if k in line} for line in expected["lines"]), key=key)
    assert sorted(({k: r[k] for k in FIELDS if k in r} for r in got), key=key) == want
    with tenant_context(tenant_a):
        needing_action = sum(
            1 for line in expected["lines"] if line["classification"] not in ("matched", "within_tolerance")
        )
        assert Discrepancy.objects.count() == needing_action


def test_importing_the_same_bundle_twice_adds_nothing(tenant_a):
    call_command(
        "import_bundle", str(DATA / "bundle-2026-10"), "--tenant", tenant_a.slug, stdout=io.StringIO()
    )
    with tenant_context(tenant_a):
        counts = (UsageEvent.objects.count(), Invoice.objects.count())
    out = io.StringIO()
    call_command("import_bundle", str(DATA / "bundle-2026-10"), "--tenant", tenant_a.slug, stdout=out)
    with tenant_context(tenant_a):
        assert (UsageEvent.objects.count(), Invoice.objects.count()) == counts
    assert " created" not in out.getvalue()
    assert "24 accounts already there" in out.getvalue()


def test_an_unknown_tenant_or_a_broken_bundle_is_a_clear_error(tenant_a, tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No tenant 'nope'"):
        call_command("import_bundle", str(DATA / "bundle-2026-10"), "--tenant", "nope")
    with pytest.raises(CommandError, match="missing: no such file or folder"):
        call_command(
            "import_bundle", str(tmp_path / "missing"), "--tenant", tenant_a.slug, "--period", "2026-10"
        )
