"""The CSM's account page: history of findings and credits, usage against the plan's allotment, notes."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps import pricing
from apps.accounts.allotment import Allotment, allotment_for, share_of
from apps.accounts.models import AccountNote
from apps.accounts.plan_usage import account_usage
from apps.accounts.selectors import account_history, account_month
from apps.audit.models import AuditEvent
from apps.tenancy.context import tenant_context
from apps.tenancy.roles import Role
from tests.conftest import member
from tests.factories import (
    AccountFactory,
    ChargeFactory,
    CreditNoteFactory,
    CreditNoteLineFactory,
    DiscrepancyEventFactory,
    DiscrepancyFactory,
    InvoiceFactory,
    MeterFactory,
    PlanVersionFactory,
    PriceOverrideFactory,
    ProposalFactory,
    ReconciliationLineFactory,
    SubscriptionPhaseFactory,
    TierFactory,
    add_events,
)

pytestmark = pytest.mark.django_db

NY = ZoneInfo("America/New_York")
D = Decimal


def page_url(tenant, account, **query):
    url = reverse("account-detail", kwargs={"tenant_slug": tenant.slug, "account_id": account.pk})
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def notes_url(tenant, account):
    return reverse("account-notes", kwargs={"tenant_slug": tenant.slug, "account_id": account.pk})


def finding(tenant, account, *, period, amount, direction="under", classification=None, currency="USD", **kw):
    """A discrepancy of ``account`` on a meter of its own (one finding per account, meter and period)."""
    line = ReconciliationLineFactory(tenant=tenant, account=account, currency=currency)
    return DiscrepancyFactory(
        tenant=tenant,
        line=line,
        account=account,
        meter=MeterFactory(tenant=tenant),
        period=period,
        direction=direction,
        classification=classification or ("under_bill" if direction == "under" else "over_bill"),
        currency=currency,
        amount=D(amount),
        **kw,
    )


@pytest.fixture
def history(tenant_a, tenant_b):
    """An account with findings, credits and charges over two periods and two currencies.

    Hand-computed (USD):
      2026-09: under 120.00 (1 finding); catch-up charge 120.00 (executed)
      2026-10: under 30.50; over 45.25 (2 findings); credits 40.00 + 5.25 (a synced credit note)
               + 10.00 (a credit note Trueup issued, not synced yet) = 55.25
      excluded: a timing finding that cleared (5.00), an intentional credit (-7.00), the executed
                proposal that *is* the synced credit note, a catch-up still waiting for approval.
    EUR 2026-10: under 12.00.
    """
    account = AccountFactory(tenant=tenant_a, name="Acme Robotics", timezone="America/New_York")
    sept = finding(tenant_a, account, period="2026-09", amount="120.00")
    finding(tenant_a, account, period="2026-10", amount="30.50")
    over = finding(tenant_a, account, period="2026-10", amount="-45.25", direction="over")
    finding(
        tenant_a, account, period="2026-10", amount="5.00", classification="timing", status="auto_cleared"
    )
    finding(tenant_a, account, period="2026-10", amount="-7.00", direction="over", classification="credit")
    finding(tenant_a, account, period="2026-10", amount="12.00", currency="EUR")
    october = InvoiceFactory(
        tenant=tenant_a,
        account=account,
        period_start=dt.datetime(2026, 10, 1, tzinfo=NY),
        period_end=dt.datetime(2026, 11, 1, tzinfo=NY),
    )
    note = CreditNoteFactory(tenant=tenant_a, invoice=october, external_id="cn_synced")
    CreditNoteLineFactory(tenant=tenant_a, credit_note=note, amount=D("40.00"))
    CreditNoteLineFactory(tenant=tenant_a, credit_note=note, amount=D("5.25"))
    ProposalFactory(
        tenant=tenant_a,
        discrepancy=over,
        kind="credit_note",
        amount=D("45.25"),
        status="executed",
        provider_reference="cn_synced",
    )
    ProposalFactory(
        tenant=tenant_a,
        discrepancy=over,
        kind="credit_note",
        amount=D("10.00"),
        status="executed",
        provider_reference="cn_not_synced_yet",
    )
    ProposalFactory(
        tenant=tenant_a, discrepancy=sept, kind="catch_up_charge", amount=D("120.00"), status="executed"
    )
    ProposalFactory(tenant=tenant_a, discrepancy=sept, kind="catch_up_charge", amount=D("30.50"))
    # Another tenant's account, findings and credits: never on this page.
    theirs = AccountFactory(tenant=tenant_b, name="Bravo Secret", timezone="America/New_York")
    finding(tenant_b, theirs, period="2026-10", amount="999.99")
    return account


def test_history_per_period_and_currency_matches_hand_computed_figures(tenant_a, history):
    with tenant_context(tenant_a):
        histories = account_history(tenant_a, history)
    assert [h.currency for h in histories] == ["EUR", "USD"]
    eur, usd = histories
    rows = {p.period: (p.under, p.over, p.credits, p.catch_up, p.findings) for p in usd.periods}
    assert rows == {
        "2026-09": (D("120.00"), D("0.00"), D("0.00"), D("120.00"), 1),
        "2026-10": (D("30.50"), D("45.25"), D("55.25"), D("0.00"), 2),
    }
    assert (usd.totals.under, usd.totals.over, usd.totals.credits, usd.totals.catch_up) == (
        D("150.50"),
        D("45.25"),
        D("55.25"),
        D("120.00"),
    )
    assert [(p.period, p.under) for p in eur.periods] == [("2026-10", D("12.00"))]
    chart = usd.chart()
    assert chart["labels"] == ["2026-09", "2026-10"] and chart["currency"] == "USD"
    assert {d["tone"]: d["data"] for d in chart["datasets"]} == {
        "under": ["120.00", "30.50"],
        "over": ["0.00", "45.25"],
        "credit": ["0.00", "55.25"],
        "recovered": ["120.00", "0.00"],
    }


def test_page_shows_the_history_chart_table_and_links_to_each_discrepancy(client, tenant_a, history):
    csm = member(tenant_a, Role.CSM)
    client.force_login(csm)
    response = client.get(page_url(tenant_a, history))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-chart="history-chart-usd"' in html and 'id="history-chart-usd"' in html
    spec = json.loads(
        re.search(r'<script id="history-chart-usd" type="application/json">(.*?)</script>', html)[1]
    )
    assert spec["datasets"][2]["data"] == ["0.00", "55.25"]
    table = re.search(r'<table class="compact history" id="history-usd">.*?</table>', html, re.S)[0]
    assert "55.25" in table and "150.50" in table and "120.00" in table
    with tenant_context(tenant_a):
        own = list(history.discrepancies.values_list("pk", flat=True))
    assert len(own) == 6
    for pk in own:
        assert reverse("discrepancy", kwargs={"tenant_slug": tenant_a.slug, "discrepancy_id": pk}) in html
    assert "999.99" not in html and "Bravo Secret" not in html


def test_another_tenants_discrepancies_are_never_counted_or_listed(client, tenant_a, tenant_b, history):
    with tenant_context(tenant_b):
        from apps.reconciliation.models import Discrepancy

        theirs = Discrepancy.objects.get(amount=D("999.99"))
    client.force_login(member(tenant_a, Role.CSM))
    html = client.get(page_url(tenant_a, history)).content.decode()
    assert f"/discrepancies/{theirs.pk}/" not in html
    with tenant_context(tenant_a):
        assert all(p.under != D("999.99") for h in account_history(tenant_a, history) for p in h.periods)


def test_another_tenants_account_is_not_found(client, tenant_a, tenant_b):
    theirs = AccountFactory(tenant=tenant_b)
    client.force_login(member(tenant_a, Role.CSM))
    assert client.get(page_url(tenant_a, theirs)).status_code == 404
    assert client.get(page_url(tenant_a, theirs, part="usage"), HTTP_HX_REQUEST="true").status_code == 404
    assert client.post(notes_url(tenant_a, theirs), {"body": "hello"}).status_code == 404
    with tenant_context(tenant_b):
        assert not AccountNote.objects.exists()


def test_page_queries_stay_bounded_as_history_grows(client, tenant_a):
    account = AccountFactory(tenant=tenant_a)
    client.force_login(member(tenant_a, Role.CSM))

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(page_url(tenant_a, account, period="2026-10")).status_code == 200
        return len(queries)

    first = finding(tenant_a, account, period="2026-09", amount="-1.00", direction="over")
    DiscrepancyEventFactory(tenant=tenant_a, discrepancy=first)
    ProposalFactory(tenant=tenant_a, discrepancy=first, status="executed", provider_reference="cn_0")
    count()  # the first request also touches the session
    few = count()
    for month in range(1, 9):
        d = finding(tenant_a, account, period=f"2026-0{month}", amount="-2.00", direction="over")
        DiscrepancyEventFactory(tenant=tenant_a, discrepancy=d)
        ProposalFactory(tenant=tenant_a, discrepancy=d, status="executed", provider_reference=f"cn_{month}")
    assert count() == few


# --- the allotment ------------------------------------------------------------------------


def tiers(*rows):
    return tuple(
        pricing.Tier(up_to=None if up is None else D(up), unit_amount=D(price)) for up, price in rows
    )


def test_allotment_of_graduated_tiers_with_a_free_first_tier_is_the_included_allowance():
    charge = pricing.Charge(model="graduated", tiers=tiers((1000, 0), (None, "0.01")))
    assert allotment_for(charge, D(250)) == Allotment("included", D(1000))
    assert share_of(D(250), allotment_for(charge, D(250))) == D("25.0")
    # Past the allowance it stays the allowance: 150% used.
    assert allotment_for(charge, D(1500)) == Allotment("included", D(1000))
    assert share_of(D(1500), Allotment("included", D(1000))) == D("150.0")
    # A flat fee on the free tier is the price of the bundle: the units are still included.
    bundled = pricing.Charge(
        model="volume", tiers=(pricing.Tier(D(500), D(0), D(99)), pricing.Tier(None, D(1)))
    )
    assert allotment_for(bundled, D(10)) == Allotment("included", D(500))


def test_allotment_of_graduated_tiers_without_free_units_is_the_next_tier_boundary():
    # The seed tiers, per 1,000 calls: 0-1 at $10, 1-10 at $8, 10+ at $5.
    charge = pricing.Charge(model="graduated", tiers=tiers((1, 10), (10, 8), (None, 5)))
    assert allotment_for(charge, D("0.5")) == Allotment("next_tier", D(1))
    assert allotment_for(charge, D(1)) == Allotment("next_tier", D(1))  # up_to is inclusive
    assert allotment_for(charge, D(4)) == Allotment("next_tier", D(10))
    assert share_of(D(4), Allotment("next_tier", D(10))) == D("40.0")
    assert allotment_for(charge, D(25)) == Allotment("top_tier", None)
    assert share_of(D(25), Allotment("top_tier", None)) is None


def test_allotment_of_per_unit_and_package_charges():
    assert allotment_for(pricing.Charge(model="per_unit", unit_amount=D("0.01")), D(5)).units is None
    assert allotment_for(pricing.Charge(model="per_unit", unit_amount=D(0)), D(5)).kind == "unlimited"
    package = pricing.Charge(model="package", package_size=D(100), package_amount=D(20))
    assert allotment_for(package, D(0)) == Allotment("package", D(100))
    assert allotment_for(package, D(250)) == Allotment("package", D(300))
    assert share_of(D(250), Allotment("package", D(300))) == D("83.3")


# --- usage against the plan ---------------------------------------------------------------


@pytest.fixture
def subscribed(tenant_a):
    """An account (New York) on a plan whose first 10 billing units (10,000 calls) are free.

    October's events (local time): 2,500 calls on the 2nd, 4,200 on the 3rd, 300 late on the
    31st (already November in UTC) = 7,000 calls = 7 billing units; a September and a November
    event do not count; storage has usage but no charge on the plan.
    """
    account = AccountFactory(tenant=tenant_a, timezone="America/New_York")
    calls = MeterFactory(tenant=tenant_a, key="api_calls", name="API calls", unit_size=D(1000), rounding="up")
    storage = MeterFactory(tenant=tenant_a, key="storage_gb", name="Storage")
    version = PlanVersionFactory(tenant=tenant_a, effective_from=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    charge = ChargeFactory(
        tenant=tenant_a, plan_version=version, meter=calls, model="graduated", unit_amount=None
    )
    TierFactory(tenant=tenant_a, charge=charge, position=0, up_to=D(10), unit_amount=D(0))
    TierFactory(tenant=tenant_a, charge=charge, position=1, up_to=None, unit_amount=D("5"))
    SubscriptionPhaseFactory(
        tenant=tenant_a, account=account, plan=version.plan, starts_at=dt.datetime(2026, 9, 1, tzinfo=NY)
    )
    at = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    add_events(
        tenant_a,
        [
            ("e1", account, calls, "2500", dt.datetime(2026, 10, 2, 9, tzinfo=NY), at),
            ("e2", account, calls, "4200", dt.datetime(2026, 10, 3, 23, 30, tzinfo=NY), at),
            ("e3", account, calls, "300", dt.datetime(2026, 10, 31, 23, 30, tzinfo=NY), at),
            ("e4", account, calls, "900", dt.datetime(2026, 9, 30, 23, 59, tzinfo=NY), at),
            ("e5", account, calls, "800", dt.datetime(2026, 11, 1, 0, 0, tzinfo=NY), at),
            ("e6", account, storage, "12.5", dt.datetime(2026, 10, 5, 12, tzinfo=NY), at),
        ],
    )
    return account, calls, storage, version


def test_usage_of_a_past_period_against_the_free_allowance(tenant_a, subscribed):
    account, calls, storage, version = subscribed
    with tenant_context(tenant_a):
        usage = account_usage(tenant_a, account, "2026-10", now=dt.datetime(2026, 12, 5, tzinfo=dt.UTC))
    assert usage.version == version and not usage.plan_changed
    assert usage.start == dt.datetime(2026, 10, 1, tzinfo=NY) and usage.as_of == dt.datetime(
        2026, 11, 1, tzinfo=NY
    )
    api, disk = usage.meters
    assert (api.meter, api.raw, api.units) == (calls, D(7000), D(7))
    assert api.allotment == Allotment("included", D(10)) and api.share == D("70.0")
    assert len(api.days) == 31 and api.days[0] == (dt.date(2026, 10, 1), D(0))
    # Cumulative, normalized each day (rounded up per 1,000 calls): 2,500 -> 3; 6,700 -> 7.
    assert api.days[1] == (dt.date(2026, 10, 2), D(3)) and api.days[2] == (dt.date(2026, 10, 3), D(7))
    assert api.days[-1] == (dt.date(2026, 10, 31), D(7))
    assert (disk.meter, disk.units, disk.allotment, disk.share) == (storage, D("12.5"), None, None)
    chart = api.chart()
    assert chart["type"] == "line" and chart["datasets"][1]["dashed"] is True
    assert chart["datasets"][1]["data"] == ["10"] * 31 and chart["datasets"][0]["data"][2] == "7"


def test_usage_of_the_current_period_counts_up_to_now(tenant_a, subscribed):
    account, *_ = subscribed
    with tenant_context(tenant_a):
        usage = account_usage(tenant_a, account, "2026-10", now=dt.datetime(2026, 10, 3, 12, tzinfo=NY))
    api = usage.meters[0]
    assert [day for day, _ in api.days] == [dt.date(2026, 10, d) for d in (1, 2, 3)]
    assert api.days[-1][1] == D(3)  # the event at 23:30 on the 3rd has not happened yet at noon


def test_a_plan_change_counts_usage_from_the_new_phase_and_an_override_replaces_the_charge(
    tenant_a, subscribed
):
    account, calls, _storage, _version = subscribed
    with tenant_context(tenant_a):
        first = account.phases.get()
        first.ends_at = dt.datetime(2026, 10, 3, tzinfo=NY)
        first.save()
    upgraded = PlanVersionFactory(tenant=tenant_a, effective_from=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    charge = ChargeFactory(
        tenant=tenant_a, plan_version=upgraded, meter=calls, model="graduated", unit_amount=None
    )
    TierFactory(tenant=tenant_a, charge=charge, position=0, up_to=D(100), unit_amount=D(0))
    TierFactory(tenant=tenant_a, charge=charge, position=1, up_to=None, unit_amount=D(1))
    SubscriptionPhaseFactory(
        tenant=tenant_a, account=account, plan=upgraded.plan, starts_at=dt.datetime(2026, 10, 3, tzinfo=NY)
    )
    with tenant_context(tenant_a):
        usage = account_usage(tenant_a, account, "2026-10", now=dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    assert usage.plan_changed and usage.version == upgraded
    api = usage.meters[0]
    # From Oct 3 (local): 4,200 + 300 calls = 5 billing units (rounded up), of 100 included.
    assert (api.units, api.allotment, api.share) == (D(5), Allotment("included", D(100)), D("5.0"))
    # The account's negotiated price (no free tier) replaces the plan's charge.
    override = PriceOverrideFactory(
        tenant=tenant_a, account=account, meter=calls, effective_from=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    )
    negotiated = ChargeFactory(
        tenant=tenant_a, plan_version=None, override=override, meter=calls, model="graduated"
    )
    TierFactory(tenant=tenant_a, charge=negotiated, position=0, up_to=D(20), unit_amount=D(2))
    TierFactory(tenant=tenant_a, charge=negotiated, position=1, up_to=None, unit_amount=D(1))
    with tenant_context(tenant_a):
        api = account_usage(tenant_a, account, "2026-10", now=dt.datetime(2026, 12, 1, tzinfo=dt.UTC)).meters[
            0
        ]
    assert api.overridden and api.allotment == Allotment("next_tier", D(20)) and api.share == D("25.0")


def test_page_shows_usage_with_meter_bars_and_the_usage_partial_for_htmx(client, tenant_a, subscribed):
    account, *_ = subscribed
    client.force_login(member(tenant_a, Role.CSM))
    html = client.get(page_url(tenant_a, account, period="2026-10")).content.decode()
    assert '<meter class="allotment" min="0" max="10" high="8.0" optimum="0" value="7"' in html
    assert "units the plan includes free" in html and "not charged on this plan" in html
    partial = client.get(page_url(tenant_a, account, period="2026-10", part="usage"), HTTP_HX_REQUEST="true")
    body = partial.content.decode()
    assert body.lstrip().startswith('<section class="card" id="usage">') and "history-chart" not in body
    assert 'data-chart="usage-chart-' in body and "70.0%" in body
    assert "HX-Request" in partial["Vary"]
    # A period that is not a month (or out of range) falls back to the current one.
    for wrong in ("9999-12", "2026-13", "x"):
        fallback = client.get(page_url(tenant_a, account, period=wrong))
        assert fallback.status_code == 200
        assert (
            f"Usage against the plan · {account_month(account, timezone.now())}" in fallback.content.decode()
        )


# --- notes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.CSM, Role.FINANCE_ANALYST, Role.FINANCE_APPROVER, Role.REVOPS])
def test_note_takers_add_a_note_with_htmx_and_it_is_audited(client, tenant_a, role):
    account = AccountFactory(tenant=tenant_a)
    author = member(tenant_a, role, full_name="Cora Writer")
    client.force_login(author)
    response = client.post(
        notes_url(tenant_a, account), {"body": "  Asked for a usage review.  "}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="notes">') and "Asked for a usage review." in html
    assert "Cora Writer" in html
    with tenant_context(tenant_a):
        note = AccountNote.objects.get()
        event = AuditEvent.objects.get(action="account.note.add")
    assert (note.account_id, note.author_id, note.body) == (
        account.pk,
        author.pk,
        "Asked for a usage review.",
    )
    assert event.actor_id == author.pk and event.object_id == str(account.pk)
    assert event.after["body"] == "Asked for a usage review."


@pytest.mark.parametrize("role", [Role.VIEWER, Role.ADMIN])
def test_roles_without_note_add_get_403_and_nothing_is_stored(client, tenant_a, role):
    account = AccountFactory(tenant=tenant_a)
    client.force_login(member(tenant_a, role))
    assert (
        client.post(notes_url(tenant_a, account), {"body": "sneaky"}, HTTP_HX_REQUEST="true").status_code
        == 403
    )
    page = client.get(page_url(tenant_a, account)).content.decode()
    assert 'name="body"' not in page  # no note form to fill in
    with tenant_context(tenant_a):
        assert not AccountNote.objects.exists()
        assert not AuditEvent.objects.filter(action="account.note.add").exists()


def test_an_empty_note_answers_422_and_stores_nothing(client, tenant_a):
    account = AccountFactory(tenant=tenant_a)
    client.force_login(member(tenant_a, Role.CSM))
    response = client.post(notes_url(tenant_a, account), {"body": "   "}, HTTP_HX_REQUEST="true")
    assert response.status_code == 422 and "Write something to add a note." in response.content.decode()
    without_js = client.post(notes_url(tenant_a, account), {"body": ""})
    assert without_js.status_code == 422 and "<h1>" in without_js.content.decode()
    with tenant_context(tenant_a):
        assert not AccountNote.objects.exists()


def test_without_javascript_a_note_redirects_back_to_the_page_newest_first(client, tenant_a):
    account = AccountFactory(tenant=tenant_a)
    client.force_login(member(tenant_a, Role.CSM))
    first = client.post(notes_url(tenant_a, account), {"body": "first call"})
    assert first.status_code == 302 and first["Location"].endswith(page_url(tenant_a, account) + "#notes")
    client.post(notes_url(tenant_a, account), {"body": "second call"})
    html = client.get(page_url(tenant_a, account)).content.decode()
    assert html.index("second call") < html.index("first call")


def test_discrepancy_comments_and_customer_note_drafts_show_on_the_page(client, tenant_a):
    account = AccountFactory(tenant=tenant_a, name="Acme")
    over = finding(tenant_a, account, period="2026-10", amount="-45.25", direction="over")
    with tenant_context(tenant_a):
        line = over.line
        line.difference = D("-45.25")
        line.save()
    DiscrepancyEventFactory(tenant=tenant_a, discrepancy=over, text="Customer disputes the October bill")
    client.force_login(member(tenant_a, Role.CSM))
    html = client.get(page_url(tenant_a, account)).content.decode()
    assert "Customer disputes the October bill" in html
    assert "We will issue a credit note for 45.25 USD" in html


# --- approvals: never for the CSM, never for the proposer ------------------------------------


def test_only_a_finance_approver_who_did_not_propose_sees_approve(client, tenant_a):
    account = AccountFactory(tenant=tenant_a)
    over = finding(tenant_a, account, period="2026-10", amount="-45.25", direction="over")
    proposer = member(tenant_a, Role.FINANCE_APPROVER)
    proposal = ProposalFactory(tenant=tenant_a, discrepancy=over, proposed_by=proposer, amount=D("45.25"))
    decide = reverse("proposal-decide", kwargs={"tenant_slug": tenant_a.slug, "proposal_id": proposal.pk})
    seen = {}
    for name, user in {
        "csm": member(tenant_a, Role.CSM),
        "analyst": member(tenant_a, Role.FINANCE_ANALYST),
        "proposer": proposer,
        "checker": member(tenant_a, Role.FINANCE_APPROVER),
    }.items():
        client.force_login(user)
        html = client.get(page_url(tenant_a, account)).content.decode()
        assert "Credit note of 45.25 USD" in html
        seen[name] = decide in html and 'value="approve"' in html
    assert seen == {"csm": False, "analyst": False, "proposer": False, "checker": True}
