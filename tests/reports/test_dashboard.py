"""The first screen after login: what was leaked, what was over-billed, where, what to do next, runs."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from django.urls import reverse

from apps.reconciliation.models import Discrepancy, ReconciliationRun
from apps.reconciliation.services import discrepancy_change_status
from apps.tenancy.context import tenant_context
from apps.tenancy.roles import Role
from tests.conftest import member
from tests.factories import OutboxMessageFactory, ProposalFactory, ReconciliationRunFactory
from tests.reports.conftest import (
    EXPECTED_LINES,
    expected_count,
    expected_total,
    figure,
    reconcile_bundle,
)

pytestmark = pytest.mark.django_db


def dashboard(client, tenant, **params):
    response = client.get(reverse("tenant-dashboard", args=[tenant.slug]), params)
    assert response.status_code == 200
    return response.content.decode()


def chart(page, chart_id):
    found = re.search(rf'<script id="{chart_id}" type="application/json">(.*?)</script>', page, re.S)
    assert found, f"no chart data {chart_id}"
    return json.loads(found.group(1))


def finding(tenant, account_key, meter_key):
    with tenant_context(tenant):
        return Discrepancy.objects.select_related("account", "meter").get(
            account__key=account_key, meter__key=meter_key
        )


def test_the_first_screen_says_what_was_leaked_over_billed_and_late(client, tenant_a, reconciled_a):
    client.force_login(member(tenant_a, Role.FINANCE_ANALYST))
    page = dashboard(client, tenant_a)
    leaked = expected_total(classes=("under_bill", "proration"), direction="under")
    over = expected_total(classes=("over_bill", "proration"), direction="over")
    late = expected_total(classes=("timing",), direction="under")
    assert (leaked, over, late) == (Decimal("233.53"), Decimal("524.28"), Decimal("61.19"))
    assert figure(page, "leaked") == "233.53"
    assert figure(page, "over_billed") == "524.28"
    assert figure(page, "late") == "61.19"
    leaked_lines = expected_count(classes=("under_bill", "proration"), direction="under")
    assert f"under-billed on {leaked_lines} lines, {leaked_lines} still open" in page
    trend = chart(page, "chart-trend")
    assert trend["labels"][-1] == "2026-10" and len(trend["labels"]) == 6 and trend["currency"] == "USD"
    assert trend["datasets"][0]["data"][-1] == "233.53" and trend["datasets"][1]["data"][-1] == "524.28"
    assert trend["datasets"][0]["data"][0] == "0.00", "months without a run show as zero, not as gaps"
    classes = chart(page, "chart-classes")
    by_class = dict(zip(classes["labels"], classes["datasets"][0]["data"], strict=True))
    assert by_class["Under-bill"] == str(expected_total(classes=("under_bill",), direction="under"))
    sources = chart(page, "chart-sources")
    metering_under = sum(
        (
            Decimal(line["difference"])
            for line in EXPECTED_LINES
            if line["source"] == "metering" and line["direction"] == "under" and line["currency"] == "USD"
        ),
        Decimal(0),
    )
    assert sources["labels"] == ["Metering", "Billing"]
    assert sources["datasets"][0]["data"][0] == str(metering_under)
    # every chart has its table: the figures are readable without the canvas
    assert 'id="by-period"' in page and 'id="by-class"' in page and 'id="by-source"' in page
    assert "Customer 00015" in page, "the accounts with the most billing errors are named"


def test_the_links_lead_into_the_queue_with_the_same_findings(client, tenant_a, reconciled_a):
    client.force_login(member(tenant_a, Role.FINANCE_ANALYST))
    page = dashboard(client, tenant_a)
    link = re.search(r'href="([^"]*classification=under_bill[^"]*)">Work the under-bills', page).group(1)
    queue = client.get(link.replace("&amp;", "&")).content.decode()
    under_bills = expected_count(classes=("under_bill",), direction="under") + expected_count(
        currency="JPY", classes=("under_bill",), direction="under"
    )
    assert f"{under_bills} discrepancies" in queue
    assert queue.count('class="class class-under_bill"') == under_bills


def test_each_currency_is_shown_on_its_own(client, tenant_a, reconciled_a):
    client.force_login(member(tenant_a, Role.FINANCE_ANALYST))
    page = dashboard(client, tenant_a, currency="JPY")
    assert figure(page, "over_billed") == "1,493" and figure(page, "leaked") == "0"
    assert chart(page, "chart-trend")["currency"] == "JPY"
    assert figure(dashboard(client, tenant_a, currency="XXX", months="nonsense"), "leaked") == "233.53"
    assert len(chart(dashboard(client, tenant_a, months=12), "chart-trend")["labels"]) == 12


def test_dismissed_findings_no_longer_count_as_leakage(client, tenant_a, reconciled_a):
    user = member(tenant_a, Role.FINANCE_ANALYST)
    client.force_login(user)
    missing_line = finding(tenant_a, "acct_00015", "storage_gb")
    assert missing_line.amount == Decimal("102.16")
    with tenant_context(tenant_a):
        discrepancy_change_status(
            discrepancy=missing_line, actor=user, status="dismissed", reason="billed by hand"
        )
    assert figure(dashboard(client, tenant_a), "leaked") == str(Decimal("233.53") - Decimal("102.16"))


def test_fixes_carried_out_show_as_recovered_and_credited_back(client, tenant_a, reconciled_a):
    client.force_login(member(tenant_a, Role.FINANCE_APPROVER))
    under = finding(tenant_a, "acct_00015", "storage_gb")
    over = finding(tenant_a, "acct_00017", "storage_gb")
    over_on_draft = finding(tenant_a, "acct_00009", "storage_gb")
    ProposalFactory(
        tenant=tenant_a, discrepancy=under, kind="catch_up_charge", amount=under.amount, status="executed"
    )
    ProposalFactory(
        tenant=tenant_a, discrepancy=over, kind="credit_note", amount=-over.amount, status="executed"
    )
    ProposalFactory(
        tenant=tenant_a,
        discrepancy=over_on_draft,
        kind="invoice_fix",
        amount=over_on_draft.amount,  # signed: a negative line takes the over-bill off the draft
        status="executed",
    )
    ProposalFactory(tenant=tenant_a, discrepancy=under, kind="catch_up_charge", amount=Decimal("5"))
    page = dashboard(client, tenant_a)
    assert figure(page, "recovered") == "102.16", "only carried-out fixes count"
    assert "21.06 USD credited back by 2 fixes" in page
    trend = chart(page, "chart-trend")
    assert trend["datasets"][2]["data"][-1] == "102.16" and trend["datasets"][3]["data"][-1] == "21.06"


def test_what_to_do_next_follows_maker_checker(client, tenant_a, reconciled_a):
    analyst = member(tenant_a, Role.FINANCE_ANALYST)
    approver = member(tenant_a, Role.FINANCE_APPROVER, email="ada@alpha.test")
    over = finding(tenant_a, "acct_00017", "storage_gb")
    theirs = ProposalFactory(tenant=tenant_a, discrepancy=over, proposed_by=analyst, amount=Decimal("14.86"))
    ProposalFactory(
        tenant=tenant_a, discrepancy=finding(tenant_a, "acct_00009", "storage_gb"), proposed_by=approver
    )
    failed = ProposalFactory(
        tenant=tenant_a, discrepancy=finding(tenant_a, "acct_00015", "storage_gb"), status="failed"
    )
    OutboxMessageFactory(tenant=tenant_a, proposal=failed, last_error="Stripe: 500 Internal Server Error")

    client.force_login(approver)
    page = dashboard(client, tenant_a)
    assert "1 proposal waits for your approval" in page
    detail = reverse("discrepancy", args=[tenant_a.slug, theirs.discrepancy_id])
    assert f'href="{detail}">Credit note 14.86 USD · Customer 00017' in page
    assert "1 proposal waits for another finance approver" in page, "their own waits for someone else"
    assert "1 approved fix failed at the provider" in page and "Stripe: 500" in page

    client.force_login(analyst)
    page = dashboard(client, tenant_a)
    assert "for your approval" not in page
    assert "2 proposals wait for a finance approver" in page
    routed_to_finance = sum(1 for line in EXPECTED_LINES if line["classification"] in ("credit", "proration"))
    assert f"{routed_to_finance} findings in your queue" in page


def test_starting_a_run_from_the_dashboard_shows_its_progress(client, tenant_a):
    client.force_login(member(tenant_a, Role.FINANCE_ANALYST))
    url = reverse("tenant-dashboard", args=[tenant_a.slug])
    assert "Nothing reconciled yet" in dashboard(client, tenant_a)
    bad = client.post(url, {"period": "2026-13"}, HTTP_HX_REQUEST="true")
    assert bad.status_code == 422 and "Use the form YYYY-MM" in bad.content.decode()
    started = client.post(url, {"period": "2026-10"}, HTTP_HX_REQUEST="true")  # queued: no worker here
    part = started.content.decode()
    assert started.status_code == 200 and 'id="dash-runs"' in part and "<html" not in part
    assert "<progress" in part and 'hx-trigger="every 1s"' in part and "2026-10" in part
    with tenant_context(tenant_a):
        run = ReconciliationRun.objects.get()
        ReconciliationRun.objects.filter(pk=run.pk).update(
            status="running", progress=40, progress_note="Pricing 12 accounts"
        )
    polled = client.get(url, {"part": "runs"}, HTTP_HX_REQUEST="true")
    assert polled.status_code == 200 and 'value="40"' in polled.content.decode()
    assert (
        "Pricing 12 accounts" in polled.content.decode() and 'id="dash-runs-table"' in polled.content.decode()
    )
    with tenant_context(tenant_a):
        ReconciliationRun.objects.filter(pk=run.pk).update(status="succeeded", progress=100)
    done = client.get(url, {"part": "runs"}, HTTP_HX_REQUEST="true")
    assert done.status_code == 204 and done["HX-Refresh"] == "true", "done: reload so every figure is new"


@pytest.mark.django_db(transaction=True)
def test_a_run_done_at_once_reloads_the_page_at_the_first_poll_and_without_htmx_redirects(client, tenant_a):
    """Without a broker (the embedded default) the run is done as soon as its request commits."""
    client.force_login(member(tenant_a, Role.ADMIN))
    url = reverse("tenant-dashboard", args=[tenant_a.slug])
    response = client.post(url, {"period": "2026-09"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and 'hx-trigger="every 1s"' in response.content.decode()
    with tenant_context(tenant_a):
        assert ReconciliationRun.objects.get().status == ReconciliationRun.Status.SUCCEEDED
    polled = client.get(url, {"part": "runs"}, HTTP_HX_REQUEST="true")
    assert polled.status_code == 204 and polled["HX-Refresh"] == "true"
    plain = client.post(url, {"period": "2026-08"})
    assert plain.status_code == 302 and plain["Location"] == url
    with tenant_context(tenant_a):
        assert sorted(ReconciliationRun.objects.values_list("period", flat=True)) == ["2026-08", "2026-09"]


@pytest.mark.parametrize("role", [Role.CSM, Role.VIEWER])
def test_who_may_not_start_runs_sees_no_button_and_is_refused(client, tenant_a, role):
    client.force_login(member(tenant_a, role))
    page = dashboard(client, tenant_a)
    assert "Start a run" not in page
    url = reverse("tenant-dashboard", args=[tenant_a.slug])
    assert client.post(url, {"period": "2026-10"}, HTTP_HX_REQUEST="true").status_code == 403
    with tenant_context(tenant_a):
        assert not ReconciliationRun.objects.exists()


def test_another_tenants_figures_never_show(client, tenant_a, tenant_b):
    reconcile_bundle(tenant_b)
    ReconciliationRunFactory(tenant=tenant_b, status="running", progress=50)
    client.force_login(member(tenant_a, Role.FINANCE_APPROVER))
    page = dashboard(client, tenant_a)
    assert "Nothing reconciled yet" in page and 'data-figure="leaked"' not in page
    assert "<progress" not in page and "No run yet." in page
    assert client.get(reverse("tenant-dashboard", args=[tenant_b.slug])).status_code == 404
    assert (
        client.post(reverse("tenant-dashboard", args=[tenant_b.slug]), {"period": "2026-10"}).status_code
        == 404
    )
