"""The monthly billing accuracy report and its CSV and XLSX exports."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import zipfile
from decimal import Decimal
from xml.etree import ElementTree

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.reconciliation.models import Discrepancy
from apps.reports.selectors import accuracy_report, period_lines, period_runs
from apps.tenancy.context import tenant_context
from apps.tenancy.roles import Role
from tests.conftest import member
from tests.factories import (
    AccountFactory,
    ProposalFactory,
    ReconciliationLineFactory,
    ReconciliationRunFactory,
)
from tests.reports.conftest import (
    BUNDLE,
    ERRORS,
    EXPECTED_LINES,
    expected_total,
    figure,
    reconcile_bundle,
)

pytestmark = pytest.mark.django_db
FINISHED = {"status": "succeeded"}


def invoices_in_bundle() -> dict[str, str]:
    """invoice id -> account, from the bundle's invoices.csv."""
    with (BUNDLE / "invoices.csv").open() as stream:
        return {row["invoice_id"]: row["account_id"] for row in csv.DictReader(stream)}


def accounts_with(*, classes: tuple[str, ...], direction: str | None = None) -> set[str]:
    return {
        line["account_id"]
        for line in EXPECTED_LINES
        if line["classification"] in classes and (direction is None or line["direction"] == direction)
    }


@pytest.fixture
def analyst(client, tenant_a):
    client.force_login(member(tenant_a, Role.FINANCE_ANALYST))
    return client


def report_page(client, tenant, **params):
    response = client.get(reverse("accuracy-report", args=[tenant.slug]), params)
    assert response.status_code == 200
    return response.content.decode()


def test_the_report_counts_invoices_and_their_billing_errors(analyst, tenant_a, reconciled_a):
    page = report_page(analyst, tenant_a)
    invoices = invoices_in_bundle()
    wrong = accounts_with(classes=ERRORS)
    over = accounts_with(classes=ERRORS, direction="over")
    assert (len(invoices), len(wrong), len(over)) == (24, 8, 5)  # the oracle, from the bundle itself
    assert "Billing accuracy · 2026-10" in page
    assert figure(page, "invoices_checked") == "24"
    assert f"{len(invoices) - len(wrong)} of {len(invoices)}; {len(wrong)} with a billing error" in page
    assert figure(page, "accuracy_rate") == "66.7%"  # 16 of 24
    assert figure(page, "dispute_rate") == "20.8%"  # 5 of 24
    assert f"{len(EXPECTED_LINES)} lines" in page


def test_mismatches_by_direction_and_class_match_the_worked_example(tenant_a, reconciled_a):
    with tenant_context(tenant_a):
        report = accuracy_report(tenant_a, "2026-10")
    found = {(m.currency, m.classification, m.direction): (m.lines, m.amount) for m in report.mismatches}
    expected = {}
    for line in EXPECTED_LINES:
        if line["classification"] == "matched":
            continue
        key = (line["currency"], line["classification"], line["direction"])
        lines, amount = expected.get(key, (0, Decimal(0)))
        expected[key] = (lines + 1, amount + abs(Decimal(line["difference"])))
    assert found == expected
    usd, jpy = report.currencies
    assert usd.currency == "USD" and jpy.currency == "JPY"
    assert usd.leaked == expected_total(classes=ERRORS, direction="under") == Decimal("233.53")
    assert usd.over_billed == expected_total(classes=ERRORS, direction="over") == Decimal("524.28")
    assert jpy.over_billed == Decimal(1493) and jpy.leaked == 0
    assert usd.late == expected_total(classes=("timing",), direction="under")
    assert usd.expected == sum(
        (Decimal(line["expected_amount"]) for line in EXPECTED_LINES if line["currency"] == "USD"), Decimal(0)
    )
    assert [(s.source, s.direction, s.currency) for s in report.by_source][:2] == [
        ("billing", "under", "USD"),
        ("metering", "over", "USD"),
    ]
    findings = sum(1 for line in EXPECTED_LINES if line["classification"] != "matched")
    assert report.finding_statuses == [("open", "Open", findings)]


def test_corrections_recovered_and_credits_issued(analyst, tenant_a, reconciled_a):
    with tenant_context(tenant_a):
        under = Discrepancy.objects.get(account__key="acct_00015", meter__key="storage_gb")
        over = Discrepancy.objects.get(account__key="acct_00017", meter__key="storage_gb")
        other = Discrepancy.objects.get(account__key="acct_00003", meter__key="api_calls")
    ProposalFactory(
        tenant=tenant_a, discrepancy=under, kind="catch_up_charge", amount=under.amount, status="executed"
    )
    ProposalFactory(
        tenant=tenant_a, discrepancy=over, kind="credit_note", amount=-over.amount, status="executed"
    )
    ProposalFactory(
        tenant=tenant_a, discrepancy=other, kind="write_off", amount=Decimal("25.00"), reason="goodwill"
    )
    page = report_page(analyst, tenant_a)
    assert figure(page, "corrections") == "2", "the write-off waits for approval: not applied yet"
    money = {
        row[0]: row[1]
        for row in re.findall(
            r'<tr data-code="(\w+)"><th scope="row">[^<]*</th>\s*<td class="num">([^<]*)', page
        )
    }
    assert money["recovered"].strip() == "102.16" and money["credits_issued"].strip() == "14.86"
    assert money["in_progress"].strip() == "25.00"
    assert "Catch-up charge" in page and "Write-off" in page and "Waiting for approval" in page


def test_only_the_runs_that_stand_for_the_period_count(tenant_a):
    """The newest full run, then partial runs that finished after it, each account from its newest run."""
    a, b, c = (AccountFactory(tenant=tenant_a) for _ in range(3))
    old = ReconciliationRunFactory(tenant=tenant_a, **FINISHED)
    full = ReconciliationRunFactory(tenant=tenant_a, finished_at=timezone.now(), **FINISHED)
    old.superseded_by = full
    with tenant_context(tenant_a):
        old.save()
    later = timezone.now() + dt.timedelta(minutes=5)
    partial = ReconciliationRunFactory(tenant=tenant_a, account_ids=[a.pk], finished_at=later, **FINISHED)
    other_month = ReconciliationRunFactory(tenant=tenant_a, period="2026-09", **FINISHED)
    failed = ReconciliationRunFactory(tenant=tenant_a, status="failed", finished_at=later)
    for run in (old, full, partial, other_month, failed):
        for account in (a, b, c) if run.account_ids is None else (a,):
            ReconciliationLineFactory(tenant=tenant_a, run=run, account=account)
    with tenant_context(tenant_a):
        runs = period_runs(tenant_a, "2026-10")
        lines = set(period_lines(tenant_a, runs).values_list("run_id", "account_id"))
    assert [r.pk for r in runs] == [partial.pk, full.pk]
    assert lines == {(partial.pk, a.pk), (full.pk, b.pk), (full.pk, c.pk)}


def test_a_month_without_a_run_says_so_and_a_bad_month_is_not_found(analyst, tenant_a, reconciled_a):
    page = report_page(analyst, tenant_a, period="2026-09")
    assert "2026-09 has not been reconciled" in page and "Export CSV" not in page
    assert 'href="?period=2026-10"' in page
    assert (
        analyst.get(reverse("accuracy-report", args=[tenant_a.slug]), {"period": "2026-13"}).status_code
        == 404
    )


def test_nothing_reconciled_yet(analyst, tenant_a):
    assert "Nothing reconciled yet" in report_page(analyst, tenant_a)


def test_csv_export_has_every_figure_and_is_audited(analyst, tenant_a, reconciled_a):
    url = reverse("accuracy-export", args=[tenant_a.slug])
    response = analyst.get(url, {"period": "2026-10", "format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert 'filename="trueup-alpha-billing-accuracy-2026-10.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    by_code = {(r["section"], r["code"], r["currency"]): r for r in rows}
    assert by_code[("summary", "invoices_checked", "")]["count"] == "24"
    assert by_code[("summary", "accurate_invoices", "")]["share"] == "0.6667"
    assert by_code[("summary", "invoices_over_billed", "")]["share"] == "0.2083"
    assert by_code[("money", "leaked", "USD")]["amount"] == "233.53"
    assert by_code[("money", "over_billed", "JPY")]["amount"] == "1493"
    assert by_code[("mismatches", "proration/over", "USD")]["count"] == "2"
    assert by_code[("mismatches", "proration/over", "USD")]["amount"] == "503.22"
    with tenant_context(tenant_a):
        event = AuditEvent.objects.get(action="report.export")
    assert event.after == {"report": "accuracy", "period": "2026-10", "format": "csv"}


def _sheet(archive, number):
    """A worksheet's cells as {reference: value} (the workbook writes its strings inline)."""
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    root = ElementTree.fromstring(archive.read(f"xl/worksheets/sheet{number}.xml"))  # noqa: S314 - our own file
    cells = {}
    for cell in root.iter(f"{{{ns['m']}}}c"):
        inline = cell.find("m:is/m:t", ns)
        value = cell.find("m:v", ns)
        cells[cell.get("r")] = (
            inline.text if inline is not None else (value.text if value is not None else None)
        )
    return cells


def test_xlsx_export_has_the_figures_and_every_mismatched_line(analyst, tenant_a, reconciled_a):
    response = analyst.get(
        reverse("accuracy-export", args=[tenant_a.slug]), {"period": "2026-10", "format": "xlsx"}
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    report = _sheet(archive, 1)
    row = next(ref[1:] for ref, value in report.items() if value == "invoices_checked")
    assert report[f"E{row}"] == "24", "counts are numbers, not text"
    leaked = next(
        ref[1:] for ref, value in report.items() if value == "leaked" and report.get(f"D{ref[1:]}") == "USD"
    )
    assert report[f"F{leaked}"] == "233.53"
    lines = _sheet(archive, 2)
    keys = [lines[f"A{r}"] for r in range(2, 100) if f"A{r}" in lines]
    assert len(keys) == sum(1 for line in EXPECTED_LINES if line["classification"] != "matched")
    missing = next(r for r in range(2, 100) if lines.get(f"A{r}") == "acct_00015")
    assert (lines[f"D{missing}"], lines[f"N{missing}"], lines[f"O{missing}"]) == (
        "Under-bill",
        "102.16",
        "Open",
    )


@pytest.mark.parametrize("role", [Role.CSM, Role.VIEWER, Role.ADMIN])
def test_every_role_reads_and_exports_and_nobody_posts(client, tenant_a, reconciled_a, role):
    client.force_login(member(tenant_a, role))
    assert "Export XLSX" in report_page(client, tenant_a)
    url = reverse("accuracy-export", args=[tenant_a.slug])
    assert client.get(url, {"period": "2026-10", "format": "csv"}).status_code == 200
    assert client.get(url, {"period": "2026-10", "format": "pdf"}).status_code == 404
    assert client.post(reverse("accuracy-report", args=[tenant_a.slug])).status_code == 405


def test_another_tenants_report_is_not_found_and_never_mixed_in(client, tenant_a, tenant_b):
    reconcile_bundle(tenant_b)
    client.force_login(member(tenant_a, Role.FINANCE_APPROVER))
    assert "Nothing reconciled yet" in report_page(client, tenant_a)
    with tenant_context(tenant_a):
        assert accuracy_report(tenant_a, "2026-10").invoices_checked == 0
    url = reverse("accuracy-export", args=[tenant_a.slug])
    assert client.get(url, {"period": "2026-10"}).status_code == 200  # an empty report, nothing of theirs
    for name in ("accuracy-report", "accuracy-export"):
        response = client.get(reverse(name, args=[tenant_b.slug]), {"period": "2026-10", "format": "csv"})
        assert response.status_code == 404
