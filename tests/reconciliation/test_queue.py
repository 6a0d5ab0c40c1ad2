from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import TestCase
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.reconciliation.models import Discrepancy
from apps.tenancy.context import tenant_context
from apps.tenancy.roles import Role
from tests.conftest import member

pytestmark = pytest.mark.django_db
BUNDLE = Path(__file__).resolve().parents[1] / "data" / "bundle-2026-10"


@pytest.fixture
def reconciled(tenant_a):
    with TestCase.captureOnCommitCallbacks(execute=True):
        call_command(
            "import_bundle", str(BUNDLE), "--tenant", tenant_a.slug, "--reconcile", stdout=io.StringIO()
        )
    return tenant_a


@pytest.fixture
def analyst(client, reconciled):
    user = member(reconciled, Role.FINANCE_ANALYST, email="fiona@alpha.test")
    client.force_login(user)
    client.user = user
    return client


def rows(html):
    return html.count('name="ids" value=')


def test_the_queue_filters_and_sorts(analyst, reconciled):
    url = reverse("queue", args=[reconciled.slug])
    everything = analyst.get(url).content.decode()
    assert rows(everything) == 18 and "18 discrepancies" in everything
    timing = analyst.get(url, {"classification": "timing"}, HTTP_HX_REQUEST="true").content.decode()
    assert timing.lstrip().startswith('<div id="queue-rows">') and rows(timing) == 3
    big = analyst.get(url, {"min_amount": "100", "sort": "amount"}).content.decode()
    with tenant_context(reconciled):
        expected = (
            Discrepancy.objects.filter(amount__gte=100).count()
            + Discrepancy.objects.filter(amount__lte=-100).count()
        )
    assert rows(big) == expected
    assert (
        "acct"
        not in analyst.get(url, {"account": "nobody-by-that-name"})
        .content.decode()
        .split("<tbody>")[1]
        .split("</tbody>")[0]
    )


def test_my_queue_shows_what_is_routed_to_my_role(analyst, reconciled):
    html = analyst.get(reverse("queue", args=[reconciled.slug]), {"mine": "on"}).content.decode()
    with tenant_context(reconciled):
        mine = Discrepancy.objects.filter(
            owner_role=Role.FINANCE_ANALYST, owner__isnull=True, status__in=("open", "assigned", "escalated")
        ).count()
    assert mine > 0 and rows(html) == mine  # credit and proration go to finance


def test_bulk_assign_and_dismiss_with_a_reason(analyst, reconciled):
    url = reverse("queue", args=[reconciled.slug])
    with tenant_context(reconciled):
        ids = list(Discrepancy.objects.filter(classification="timing").values_list("pk", flat=True))
    assert analyst.post(url, {"ids": ids, "action": "dismiss", "reason": ""}).status_code == 302
    with tenant_context(reconciled):
        assert not Discrepancy.objects.filter(pk__in=ids, status="dismissed").exists(), (
            "no reason, no dismissal"
        )
    analyst.post(url, {"ids": ids[:2], "action": "assign", "owner": analyst.user.pk})
    analyst.post(url, {"ids": ids[2:], "action": "dismiss", "reason": "known late pipeline"})
    with tenant_context(reconciled):
        assert Discrepancy.objects.filter(pk__in=ids[:2], owner=analyst.user, status="assigned").count() == 2
        assert Discrepancy.objects.get(pk=ids[2]).status == "dismissed"
        assert (
            AuditEvent.objects.filter(action="discrepancy.status", reason="known late pipeline").count() == 1
        )


def test_detail_shows_the_working_timeline_and_takes_comments_inline(analyst, reconciled):
    with tenant_context(reconciled):
        finding = Discrepancy.objects.filter(classification="over_bill").first()
    url = reverse("discrepancy", args=[reconciled.slug, finding.pk])
    page = analyst.get(url).content.decode()
    assert "Units, side by side" in page and "credit note" in page and "found" in page
    timeline = analyst.post(url, {"do": "comment", "text": "Asked the customer"}, HTTP_HX_REQUEST="true")
    assert timeline.content.decode().lstrip().startswith('<div id="timeline">')
    assert "Asked the customer" in timeline.content.decode()


def test_viewers_read_but_do_not_work_the_queue(client, reconciled):
    client.force_login(member(reconciled, Role.VIEWER))
    url = reverse("queue", args=[reconciled.slug])
    assert client.get(url).status_code == 200
    with tenant_context(reconciled):
        some = Discrepancy.objects.first()
    assert client.post(url, {"ids": [some.pk], "action": "dismiss", "reason": "x"}).status_code == 403


def test_customer_note_speaks_the_customers_currency(analyst, reconciled):
    with tenant_context(reconciled):
        finding = Discrepancy.objects.get(currency="JPY")
    page = analyst.get(reverse("discrepancy", args=[reconciled.slug, finding.pk])).content.decode()
    assert f"{abs(finding.amount).quantize(Decimal(1)):,} JPY" in page


def test_customer_notes_fit_the_kind_of_finding(analyst, reconciled):
    with tenant_context(reconciled):
        kinds = {d.classification: d for d in Discrepancy.objects.all()}
    notes = {
        kind: analyst.get(reverse("discrepancy", args=[reconciled.slug, d.pk])).content.decode()
        for kind, d in kinds.items()
    }
    assert "credit note" in notes["over_bill"] and "next invoice" in notes["under_bill"]
    assert "applied as agreed" in notes["credit"] and "after the invoice was issued" in notes["timing"]
    assert "plan change" in notes["proration"]
