"""Whole workflows in a real browser (Debian's Chromium), against a live server wired to the Stripe sandbox.

Propose a credit note and have it approved (the note then exists at the sandbox, once); the
maker-checker rule and the CSM's read-only view, in the page and when a POST is forced; and the
discrepancy queue's filters, paging and bulk actions swapped in place, without a page load.
Celery runs eagerly in tests: the approval that completes a proposal delivers it in its request.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from apps.approvals.models import Approval, OutboxMessage, Proposal
from apps.approvals.services import proposal_create
from apps.reconciliation.models import Discrepancy
from apps.reconciliation.services import discrepancy_comment
from apps.tenancy.context import tenant_context
from apps.tenancy.roles import Role
from tests.approvals.world import OVER_BILLED, World, credit_notes, stripe_sandbox, stripe_seeded, world
from tests.conftest import member
from tests.factories import DiscrepancyFactory, ReconciliationLineFactory, ReconciliationRunFactory

__all__ = ["stripe_sandbox", "stripe_seeded", "world"]  # fixtures, taken from the approval tests
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
APPROVE = "button[name=decision][value=approve]"


def sign_in(page: Any, live_server: Any, user: Any) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", user.email)
    page.fill("#id_password", "pw-for-tests")
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)


def sign_out(page: Any) -> None:
    page.click("form.logout button[type=submit]")
    page.wait_for_url("**/login/")


def open_finding(page: Any, live_server: Any, world: World) -> str:
    url = live_server.url + reverse("discrepancy", args=[world.tenant.slug, world.finding.pk])
    page.goto(url)
    expect(page.locator("h1")).to_contain_text("Acme Ltd")
    return url


def forced_approve(page: Any, live_server: Any, proposal: Proposal) -> Any:
    """POST the decide URL with this page's session and CSRF token, as a hand-made request would."""
    token = page.locator("input[name=csrfmiddlewaretoken]").first.get_attribute("value")
    return page.request.post(
        live_server.url + reverse("proposal-decide", args=[proposal.tenant.slug, proposal.pk]),
        form={"decision": "approve", "reason": "", "csrfmiddlewaretoken": token},
    )


def nothing_happened(world: World, sandbox: Any, proposal: Proposal) -> None:
    with tenant_context(world.tenant):
        proposal.refresh_from_db()
        assert proposal.status == "proposed", "the proposal is still waiting"
        assert not Approval.objects.exists() and not OutboxMessage.objects.exists()
        assert Discrepancy.objects.get(pk=world.finding.pk).status == "open"
    assert credit_notes(sandbox) == [], "no credit note at the provider"


def test_an_analyst_proposes_a_credit_note_and_an_approver_issues_it_at_stripe(
    page, live_server, world, stripe_sandbox
):
    analyst, approver = world.people["analyst"], world.people["approver"]
    sign_in(page, live_server, analyst)
    page.click("nav >> text=Discrepancies")
    page.locator("#queue-rows tbody tr", has_text="Acme Ltd").locator("a").click()
    expect(page.locator("h1")).to_contain_text("Over-bill")
    page.select_option("#kind", "credit_note")
    page.locator("form:has(#kind) button[type=submit]").click()
    expect(page.locator(".flash")).to_contain_text("Proposed: a finance approver decides next.")
    proposal_box = page.locator(".proposal", has_text="proposed by Fiona Analyst")
    expect(proposal_box).to_contain_text("Credit note of 40.00 USD · Waiting for approval")
    expect(proposal_box).to_contain_text(f"would issue a credit note of 40.00 USD on invoice {world.invoice}")
    expect(page.locator(APPROVE)).to_have_count(0)  # an analyst proposes; a finance approver decides
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "discrepancy.png"), full_page=True)
    assert page.console_errors == [], page.console_errors

    sign_out(page)
    sign_in(page, live_server, approver)
    open_finding(page, live_server, world)
    page.fill(f"form:has({APPROVE}) input[name=reason]", "matches the contract")
    page.click(APPROVE)
    expect(page.locator(".flash")).to_contain_text("Decision recorded.")
    expect(proposal_box).to_contain_text("Credit note of 40.00 USD · Done")
    expect(proposal_box).to_contain_text("Approved by Paula Approver: matches the contract")
    reference = proposal_box.locator("code").inner_text()
    assert reference.startswith("cn_")
    expect(page.locator("#timeline")).to_contain_text(f"Credit note {reference} issued at the provider")
    expect(page.locator(APPROVE)).to_have_count(0)

    notes = credit_notes(stripe_sandbox)  # at Stripe (the sandbox), through the official SDK
    assert [(n.id, n.amount, n.invoice) for n in notes] == [(reference, OVER_BILLED, world.invoice)]
    with tenant_context(world.tenant):
        assert Discrepancy.objects.get(pk=world.finding.pk).status == "resolved"
    assert page.console_errors == [], page.console_errors


def propose_as_approver(page: Any, live_server: Any, world: World) -> Proposal:
    """A finance approver may propose too; their own proposal then waits for somebody else."""
    sign_in(page, live_server, world.people["approver"])
    open_finding(page, live_server, world)
    page.locator("form:has(#kind) button[type=submit]").click()
    expect(page.locator(".proposal")).to_contain_text("Waiting for approval · proposed by Paula Approver")
    with tenant_context(world.tenant):
        return Proposal.objects.get()


def test_whoever_proposes_is_refused_when_forcing_the_approval(page, live_server, world, stripe_sandbox):
    proposal = propose_as_approver(page, live_server, world)
    refused = forced_approve(page, live_server, proposal)
    assert refused.ok  # the decide view answers with the page again (a redirect), saying why
    assert "Whoever proposes cannot approve their own proposal." in refused.text()
    nothing_happened(world, stripe_sandbox, proposal)

    sign_out(page)  # somebody else may
    sign_in(page, live_server, world.people["approver2"])
    open_finding(page, live_server, world)
    expect(page.locator(APPROVE)).to_have_count(1)
    assert page.console_errors == [], page.console_errors


def test_whoever_proposes_sees_no_approve_action_on_their_own_proposal(page, live_server, world):
    propose_as_approver(page, live_server, world)  # a finance approver: the role may approve
    page.reload()
    expect(page.locator(".proposal")).to_contain_text("Waiting for approval · proposed by Paula Approver")
    expect(page.locator(APPROVE)).to_have_count(0)
    assert page.console_errors == [], page.console_errors


def test_a_csm_reads_the_history_but_cannot_approve(page, live_server, world, stripe_sandbox):
    analyst, csm = world.people["analyst"], world.people["csm"]
    with tenant_context(world.tenant):
        proposal = proposal_create(actor=analyst, discrepancy=world.finding, kind="credit_note")
        discrepancy_comment(
            discrepancy=world.finding, actor=analyst, text="Acme confirmed the seats were cancelled"
        )
    sign_in(page, live_server, csm)
    open_finding(page, live_server, world)
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("Fiona Analyst comment: Acme confirmed the seats were cancelled")
    expect(page.locator(".proposal")).to_contain_text("Credit note of 40.00 USD · Waiting for approval")
    expect(page.locator(APPROVE)).to_have_count(0)
    expect(timeline.locator("form")).to_have_count(0)  # reads the history; works no queue

    refused = forced_approve(page, live_server, proposal)
    assert refused.status == 403
    nothing_happened(world, stripe_sandbox, proposal)
    assert page.console_errors == [], page.console_errors


def queue_world(tenant: Any) -> None:
    """64 findings needing action (55 under-bills, 6 over-bills, 3 timing) and 30 resolved ones."""
    run = ReconciliationRunFactory(tenant=tenant)
    for classification, direction, status, count in (
        ("under_bill", "under", "resolved", 30),
        ("timing", "under", "open", 3),
        ("under_bill", "under", "open", 55),
        ("over_bill", "over", "open", 6),
    ):
        for _ in range(count):
            amount = Decimal("12.50") if direction == "under" else Decimal("-7.25")
            line = ReconciliationLineFactory(
                tenant=tenant, run=run, difference=amount, direction=direction, classification=classification
            )
            DiscrepancyFactory(
                tenant=tenant,
                line=line,
                amount=amount,
                direction=direction,
                classification=classification,
                status=status,
                owner_role=Role.FINANCE_ANALYST,
            )


def statuses(page: Any) -> list[str]:
    """The status each row of the queue shows (its inline select's value)."""
    return page.eval_on_selector_all("#queue-rows select.inline-status", "els => els.map(e => e.value)")


def test_the_queue_filters_pages_and_acts_in_place(page, live_server, tenant_a):
    queue_world(tenant_a)
    analyst = member(tenant_a, Role.FINANCE_ANALYST, email="fiona@alpha.test", full_name="Fiona Analyst")
    rows = page.locator("#queue-rows tbody tr")
    sign_in(page, live_server, analyst)
    page.goto(live_server.url + reverse("queue", args=[tenant_a.slug]))
    expect(rows).to_have_count(50)
    expect(page.locator("#queue-rows .pager")).to_contain_text("Page 1 of 2 · 64 discrepancies")
    page.evaluate("window.__marker = 1")

    page.click("#queue-rows .pager >> text=Next")
    expect(page.locator("#queue-rows .pager")).to_contain_text("Page 2 of 2 · 64 discrepancies")
    expect(rows).to_have_count(14)
    assert set(statuses(page)) <= {"open", "assigned", "escalated"}  # page 2 of the same queue: still active
    assert "page=2" in page.url
    assert page.evaluate("window.__marker") == 1, "paging must not load a new page"

    page.select_option("#f-class", "over_bill")
    expect(rows).to_have_count(6)
    expect(rows.filter(has_text="Over-bill")).to_have_count(6)
    assert "classification=over_bill" in page.url and "page=" not in page.url
    assert page.evaluate("window.__marker") == 1, "filtering must not load a new page"

    for n in range(3):
        rows.nth(n).locator("input[name=ids]").check()
    page.select_option("#bulk-owner", str(analyst.pk))
    page.click("#queue-rows button[value=assign]")
    expect(page.locator("#queue-rows .flash")).to_contain_text("3 discrepancies updated.")
    expect(rows.filter(has_text="Fiona Analyst")).to_have_count(3)
    assert statuses(page).count("assigned") == 3
    expect(rows).to_have_count(6)  # still filtered to over-bills
    expect(page.locator("#queue-loading")).to_have_css("opacity", "0")  # settled
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "queue.png"), full_page=True)

    rows.nth(5).locator("input[name=ids]").check()
    page.click("#queue-rows button[value=dismiss]")  # without a reason: refused, nothing changes
    expect(page.locator("#queue-rows .flash")).to_contain_text("Dismissing needs a reason.")
    expect(rows).to_have_count(6)
    rows.nth(5).locator("input[name=ids]").check()
    page.fill("#bulk-reason", "contractual minimum")
    page.click("#queue-rows button[value=dismiss]")
    expect(page.locator("#queue-rows .flash")).to_contain_text("1 discrepancy updated.")
    expect(rows).to_have_count(5)  # dismissed: no longer needs action

    page.select_option("#f-status", "dismissed")
    expect(rows).to_have_count(1)
    assert "status=dismissed" in page.url
    assert page.evaluate("window.__marker") == 1, "acting on rows must not load a new page"
    page.select_option("#f-status", "active")
    expect(rows).to_have_count(5)

    page.reload()  # the address bar holds the filters: a reload shows the same queue
    expect(rows).to_have_count(5)
    expect(page.locator("#f-class")).to_have_value("over_bill")
    expect(page.locator("#f-status")).to_have_value("active")

    page.evaluate("window.__marker = 2")  # one row's status, changed in the row itself
    first = rows.nth(0)
    finding_id = first.locator("input[name=ids]").get_attribute("value")
    with page.expect_response(lambda r: r.url.endswith(f"/{finding_id}/status/")) as answer:
        first.locator("select.inline-status").select_option("resolved")
    assert answer.value.status == 200
    expect(page.locator(f"#finding-{finding_id} select.inline-status")).to_have_value("resolved")
    assert page.evaluate("window.__marker") == 2, "a row's status must change without a page load"
    with tenant_context(tenant_a):
        assert Discrepancy.objects.get(pk=finding_id).status == "resolved"
        assert Discrepancy.objects.filter(owner=analyst, status="assigned").count() == 3 - (
            Discrepancy.objects.filter(pk=finding_id, owner=analyst).count()
        )
        assert Discrepancy.objects.filter(status="dismissed").count() == 1
    assert page.console_errors == [], page.console_errors
