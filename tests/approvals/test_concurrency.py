"""Many approvers at once, a redelivery racing a delivery, a provider failing then working: one credit note.

Real concurrency on PostgreSQL: the live server serves each request in its own thread with its
own database connection; clients in threads are released together by a barrier. The provider is
the Stripe sandbox over HTTP (the official SDK), with its fault injection. Celery runs eagerly in
tests, so the approval that completes the proposal delivers it within its own request.

Covered elsewhere (tests/providers/test_approvals_outbox.py) and not repeated here: the
maker-checker rules one by one, a double click, a worker killed after the provider call, and one
injected 500 retried through ``deliver``.
"""

from __future__ import annotations

import re
import threading
import time
from decimal import Decimal
from typing import Any

import pytest
import requests
from django.conf import settings
from django.db import connection
from django.test import Client
from django.urls import reverse

from apps.approvals.models import Approval, OutboxMessage, Proposal
from apps.approvals.services import deliver, proposal_create, proposal_decide
from apps.audit.models import AuditEvent
from apps.providers.base import ProviderError
from apps.reconciliation.models import Discrepancy, DiscrepancyEvent
from apps.tenancy.context import tenant_context
from apps.tenancy.models import Tenant
from apps.tenancy.roles import Role
from tests.approvals.world import OVER_BILLED, World, credit_notes, sandbox_requests
from tests.conftest import member
from tests.providers.conftest import stripe_sandbox_call

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
APPROVERS = 20
CREDIT_NOTES = ("POST", "/v1/credit_notes")


def signed_in(live_server: Any, user: Any, page: str) -> tuple[requests.Session, str]:
    """A browser-like session of ``user`` on the live server, and the CSRF token its forms carry."""
    client = Client()
    client.force_login(user)
    session = requests.Session()
    session.cookies.set(settings.SESSION_COOKIE_NAME, client.cookies[settings.SESSION_COOKIE_NAME].value)
    response = session.get(live_server.url + page, timeout=30)
    assert response.status_code == 200, response.status_code
    return session, session.cookies["csrftoken"]


def flash(html: str) -> list[str]:
    return [
        re.sub(r"\s+", " ", text).strip() for text in re.findall(r'<p class="flash[^"]*">(.*?)</p>', html)
    ]


def propose(world: World) -> Proposal:
    with tenant_context(world.tenant):
        return proposal_create(actor=world.people["analyst"], discrepancy=world.finding, kind="credit_note")


@pytest.mark.parametrize("needed", [1, 2], ids=["one-approval", "two-approvals"])
def test_twenty_approvers_at_once_make_one_credit_note(live_server, world, stripe_sandbox, needed):
    if needed == 2:  # above the single-approval limit: two distinct approvers, exactly
        Tenant.objects.filter(pk=world.tenant.pk).update(single_approval_limit=Decimal("25.00"))
    proposal = propose(world)
    assert proposal.approvals_needed == needed
    page = reverse("discrepancy", args=[world.tenant.slug, world.finding.pk])
    decide = live_server.url + reverse("proposal-decide", args=[world.tenant.slug, proposal.pk])
    approvers = [member(world.tenant, Role.FINANCE_APPROVER) for _ in range(APPROVERS)]
    sessions = [signed_in(live_server, user, page) for user in approvers]
    barrier = threading.Barrier(APPROVERS)
    answers: list[Any] = [None] * APPROVERS

    def approve(n: int) -> None:
        session, token = sessions[n]
        barrier.wait()
        try:
            response = session.post(
                decide, data={"decision": "approve"}, headers={"X-CSRFToken": token}, timeout=60
            )
            answers[n] = (response.status_code, flash(response.text))
        except requests.RequestException as exc:  # reported below, with the others
            answers[n] = (0, [repr(exc)])

    threads = [threading.Thread(target=approve, args=(n,)) for n in range(APPROVERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert {status for status, _ in answers} == {200}, answers  # each followed its redirect to the page
    counted = [n for n, (_, messages) in enumerate(answers) if messages == ["Decision recorded."]]
    refused = [messages for _, messages in answers if messages != ["Decision recorded."]]
    assert len(counted) == needed, answers
    assert len(refused) == APPROVERS - needed
    for messages in refused:  # a clear refusal, not an error page or silence
        assert len(messages) == 1 and re.fullmatch(r"This proposal is .+ already\.", messages[0]), messages
    with tenant_context(world.tenant):
        decisions = list(Approval.objects.filter(proposal=proposal))
        assert len(decisions) == needed and all(d.approved for d in decisions)
        assert {d.approver_id for d in decisions} == {approvers[n].pk for n in counted}
        assert AuditEvent.objects.filter(action="proposal.approve").count() == needed
        message = OutboxMessage.objects.get()  # one outbox message
        assert (message.status, message.attempts) == ("sent", 1)
        proposal.refresh_from_db()
        assert proposal.status == "executed" and proposal.provider_reference.startswith("cn_")
        assert Discrepancy.objects.get().status == "resolved"
    notes = credit_notes(stripe_sandbox)
    assert [(n.id, n.amount, n.invoice) for n in notes] == [
        (proposal.provider_reference, OVER_BILLED, world.invoice)
    ]
    assert len(sandbox_requests(stripe_sandbox, *CREDIT_NOTES)) == 1, "one call: not even a replayed one"


def test_the_provider_fails_three_times_then_recovers_one_credit_note_and_visible_meanwhile(
    client, world, stripe_sandbox
):
    """Approve while the provider answers 500 to the first three credit-note calls; the retries (run
    here as the worker would run them) send the same idempotency key until one is accepted."""
    proposal = propose(world)
    stripe_sandbox_call(
        stripe_sandbox,
        "POST",
        "faults",
        {"path": "^/v1/credit_notes$", "method": "POST", "status": 500, "count": 3},
    )
    page = reverse("discrepancy", args=[world.tenant.slug, world.finding.pk])
    client.force_login(world.people["approver"])
    client.raise_request_exception = False  # as a browser would: whatever the server answers
    response = client.post(
        reverse("proposal-decide", args=[world.tenant.slug, proposal.pk]), {"decision": "approve"}
    )
    with tenant_context(world.tenant):
        message = OutboxMessage.objects.get()
    backoff = []
    for attempt in (1, 2, 3):
        if attempt > 1:
            with pytest.raises(ProviderError):
                deliver(world.tenant.pk, message.pk)
        with tenant_context(world.tenant):
            message.refresh_from_db()
            proposal.refresh_from_db()
            assert (message.status, message.attempts) == ("pending", attempt)
            assert proposal.status == "failed" and "500" in message.last_error
            backoff.append(message.next_attempt_at)
        html = client.get(page).content.decode()
        assert "Failed: retrying" in html and f"Last attempt failed ({attempt})" in html
        assert credit_notes(stripe_sandbox) == []
    assert backoff == sorted(backoff) and len(set(backoff)) == 3, "each retry waits longer"

    assert deliver(world.tenant.pk, message.pk).status == "sent"
    assert deliver(world.tenant.pk, message.pk).status == "sent"  # a late duplicate retry: nothing more
    notes = credit_notes(stripe_sandbox)
    assert len(notes) == 1 and notes[0].amount == OVER_BILLED
    calls = sandbox_requests(stripe_sandbox, *CREDIT_NOTES)
    assert [c["status"] for c in calls] == [500, 500, 500, 200]
    assert {c["idempotency_key"] for c in calls} == {message.idempotency_key}
    html = client.get(page).content.decode()
    assert "Done" in html and notes[0].id in html and "Last attempt failed" not in html
    # The approver's own request, while the provider failed: a normal page saying what happens next.
    assert response.status_code == 302, (
        f"approving while the provider fails answered {response.status_code}: the failure must show as "
        "'Failed: retrying' on the page, not as a server error"
    )


def test_a_redelivery_while_the_first_delivery_waits_on_the_provider_records_the_credit_note_once(
    world, stripe_sandbox
):
    """The approval's own delivery waits 1.5 s on the provider; meanwhile the message is delivered
    again (a broker redelivering an unacknowledged task, or a retry): one credit note, recorded once."""
    proposal = propose(world)
    stripe_sandbox_call(
        stripe_sandbox,
        "POST",
        "faults",
        {"path": "^/v1/credit_notes$", "method": "POST", "delay": 1.5, "count": 1},
    )
    outcomes: list[Any] = []

    def in_thread(work: Any) -> threading.Thread:
        def run() -> None:
            try:
                outcomes.append(work())
            except Exception as exc:
                outcomes.append(repr(exc))
            finally:
                connection.close()  # this thread's own connection

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def approve() -> str:
        with tenant_context(world.tenant):  # delivers eagerly once this commits
            return proposal_decide(actor=world.people["approver"], proposal=proposal, approve=True).status

    def redeliver() -> str:
        with tenant_context(world.tenant):
            message = OutboxMessage.objects.get()
        return deliver(world.tenant.pk, message.pk).status

    first = in_thread(approve)
    deadline = time.monotonic() + 10
    while not sandbox_requests(stripe_sandbox, *CREDIT_NOTES):  # the first call is at the provider
        assert time.monotonic() < deadline, "the approval never reached the provider"
        time.sleep(0.02)
    second = in_thread(redeliver)
    first.join()
    second.join()

    assert sorted(outcomes) == ["approved", "sent"], outcomes
    notes = credit_notes(stripe_sandbox)
    assert len(notes) == 1 and notes[0].amount == OVER_BILLED
    with tenant_context(world.tenant):
        assert OutboxMessage.objects.get().status == "sent"
        assert Proposal.objects.get().provider_reference == notes[0].id
        resolved = DiscrepancyEvent.objects.filter(kind="status", to_status="resolved").count()
        executed = AuditEvent.objects.filter(action="proposal.executed").count()
    assert (resolved, executed) == (1, 1), (
        f"one credit note, recorded {executed} times in the audit log and {resolved} times in the "
        "discrepancy's timeline: only the delivery that marks the message sent may record it"
    )
