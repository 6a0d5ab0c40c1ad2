"""The database-backed engine: one period's stored events, invoices and credits reconciled and kept."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.test import TestCase

from apps import pricing
from apps.catalog.services import ChargeSpec, charge_save
from apps.reconciliation.models import (
    Discrepancy,
    ReconciliationLine,
    ReconciliationRun,
    RoutingRule,
    Threshold,
)
from apps.reconciliation.services import discrepancy_change_status, run_create
from apps.tenancy.context import tenant_context
from apps.tenancy.roles import Role
from tests.conftest import member
from tests.factories import (
    AccountFactory,
    InvoiceFactory,
    InvoiceLineFactory,
    MeterFactory,
    PlanFactory,
    PlanVersionFactory,
    SubscriptionPhaseFactory,
    add_events,
)

pytestmark = pytest.mark.django_db
D = Decimal
UTC = dt.UTC
OCT_1, NOV_1, DEC_1 = (dt.datetime(2026, m, 1, tzinfo=UTC) for m in (10, 11, 12))
SEED = ChargeSpec(
    model="graduated", tiers=(pricing.Tier(D(1), D(10)), pricing.Tier(D(10), D(8)), pricing.Tier(None, D(5)))
)


class World:
    """One tenant with a Growth plan (base fee 99, API calls per 1,000 on the seed tiers)."""

    def __init__(self, tenant, *, accounts=1, timezone="UTC", csm=None):
        self.tenant = tenant
        self.meter = MeterFactory(tenant=tenant, key="api_calls", unit_size=D(1000), rounding="up")
        self.plan = PlanFactory(tenant=tenant, key="growth")
        self.version = PlanVersionFactory(
            tenant=tenant,
            plan=self.plan,
            base_fee=D("99.00"),
            effective_from=dt.datetime(2026, 1, 1, tzinfo=UTC),
        )
        with tenant_context(tenant):
            charge_save(actor=None, version=self.version, meter=self.meter, spec=SEED)
        self.accounts = [
            AccountFactory(tenant=tenant, key=f"acct-{i}", timezone=timezone, csm_owner=csm)
            for i in range(accounts)
        ]
        for account in self.accounts:
            SubscriptionPhaseFactory(
                tenant=tenant, account=account, plan=self.plan, starts_at=dt.datetime(2026, 1, 1, tzinfo=UTC)
            )
        self.n = 0

    def usage(self, account, quantity, occurred, received=None):
        self.n += 1
        add_events(
            self.tenant,
            [
                (
                    f"e{self.n}",
                    account,
                    self.meter,
                    quantity,
                    occurred,
                    received or occurred + dt.timedelta(minutes=5),
                )
            ],
        )

    def invoice(self, account, start, end, *, units, amount, fee="99.00", finalized=None):
        invoice = InvoiceFactory(
            tenant=self.tenant,
            account=account,
            period_start=start,
            period_end=end,
            finalized_at=finalized or end + dt.timedelta(hours=2),
        )
        InvoiceLineFactory(tenant=self.tenant, invoice=invoice, meter=None, quantity=1, amount=D(fee))
        InvoiceLineFactory(
            tenant=self.tenant, invoice=invoice, meter=self.meter, quantity=D(units), amount=D(amount)
        )
        return invoice

    def run(self, period="2026-10"):
        # the run starts when its transaction commits: run those callbacks, as a real commit would
        with TestCase.captureOnCommitCallbacks(execute=True), tenant_context(self.tenant):
            run = run_create(actor=None, period=period)
        with tenant_context(self.tenant):
            run.refresh_from_db()
            return run

    def lines(self, run):
        with tenant_context(self.tenant):
            return {
                (line.account.key, line.meter.key if line.meter else None): line
                for line in ReconciliationLine.objects.filter(run=run).select_related("account", "meter")
            }


def test_a_right_invoice_matches_and_a_wrong_tier_is_an_under_bill(tenant_a):
    world = World(tenant_a, accounts=2)
    right, wrong = world.accounts
    for account in world.accounts:
        world.usage(account, "25000", OCT_1 + dt.timedelta(days=3))
    world.invoice(right, OCT_1, NOV_1, units=25, amount="157.00")
    world.invoice(wrong, OCT_1, NOV_1, units=25, amount="125.00")  # priced as volume by mistake
    run = world.run()
    assert run.status == ReconciliationRun.Status.SUCCEEDED and run.progress == 100
    lines = world.lines(run)
    assert lines[("acct-0", "api_calls")].classification == "matched"
    assert lines[("acct-0", None)].classification == "matched"
    bad = lines[("acct-1", "api_calls")]
    assert (bad.classification, bad.source, bad.difference) == ("under_bill", "billing", D("32.00"))
    assert [t["subtotal"] for t in bad.working["expected"]["phases"][0]["charge"]["lines"]] == [
        "10",
        "72",
        "75",
    ]
    assert run.counts["by_class"] == {"matched": 3, "under_bill": 1}
    assert set(run.input_checksums) >= {"usage", "invoice_lines", "credits", "metered"}
    with tenant_context(tenant_a):
        finding = Discrepancy.objects.get()
    assert (finding.account_id, finding.amount, finding.owner_role) == (wrong.pk, D("32.00"), Role.REVOPS)


def test_usage_never_invoiced_is_leakage(tenant_a):
    world = World(tenant_a)
    (account,) = world.accounts
    world.usage(account, "1500", OCT_1 + dt.timedelta(days=1))
    invoice = InvoiceFactory(tenant=tenant_a, account=account, period_start=OCT_1, period_end=NOV_1)
    InvoiceLineFactory(tenant=tenant_a, invoice=invoice, meter=None, quantity=1, amount=D("99.00"))
    line = world.lines(world.run())[("acct-0", "api_calls")]
    assert (line.classification, line.invoiced_amount, line.expected_amount) == ("under_bill", 0, D("18.00"))


def test_late_events_make_a_timing_finding_that_clears_when_next_month_bills_them(tenant_a):
    world = World(tenant_a)
    (account,) = world.accounts
    world.usage(account, "5000", OCT_1 + dt.timedelta(days=2))
    late_at = NOV_1 + dt.timedelta(days=3)  # after the cut-off (invoice finalized NOV_1 + 2h)
    world.usage(account, "1000", NOV_1 - dt.timedelta(hours=1), received=late_at)
    world.invoice(account, OCT_1, NOV_1, units=5, amount="42.00")  # 1*10 + 4*8
    october = world.run("2026-10")
    line = world.lines(october)[("acct-0", "api_calls")]
    assert line.classification == "timing" and line.working["events"]["late_count"] == 1
    assert line.working["events"]["late_event_ids"] == ["e2"]
    # November: 2,000 calls of its own, and the invoice also bills October's late 1,000
    world.usage(account, "2000", NOV_1 + dt.timedelta(days=5))
    world.invoice(account, NOV_1, DEC_1, units=3, amount="26.00")  # 3 units: 10 + 2*8
    november = world.run("2026-11")
    assert world.lines(november)[("acct-0", "api_calls")].classification == "matched", "not an over-bill"
    with tenant_context(tenant_a):
        finding = Discrepancy.objects.get(period="2026-10")
        assert finding.status == Discrepancy.Status.AUTO_CLEARED
        assert "billed on the 2026-11 invoice" in finding.events.last().text


def test_timing_findings_never_billed_escalate_to_under_bill(tenant_a):
    world = World(tenant_a)
    (account,) = world.accounts
    world.usage(account, "5000", OCT_1 + dt.timedelta(days=2))
    world.usage(account, "1000", NOV_1 - dt.timedelta(hours=1), received=NOV_1 + dt.timedelta(days=3))
    world.invoice(account, OCT_1, NOV_1, units=5, amount="42.00")
    world.run("2026-10")
    world.usage(account, "2000", NOV_1 + dt.timedelta(days=5))
    world.invoice(account, NOV_1, DEC_1, units=2, amount="18.00")  # only November's own usage
    world.run("2026-11")
    with tenant_context(tenant_a):
        finding = Discrepancy.objects.get(period="2026-10")
    assert (finding.status, finding.classification, finding.owner_role) == (
        "escalated",
        "under_bill",
        "revops",
    )


def test_a_rerun_keeps_findings_and_decisions(tenant_a, admin_a):
    world = World(tenant_a, accounts=2)
    fixed, dismissed = world.accounts
    for account in world.accounts:
        world.usage(account, "25000", OCT_1 + dt.timedelta(days=3))
    wrong = world.invoice(fixed, OCT_1, NOV_1, units=25, amount="125.00")
    world.invoice(dismissed, OCT_1, NOV_1, units=25, amount="125.00")
    first = world.run()
    with tenant_context(tenant_a):
        d = Discrepancy.objects.get(account=dismissed)
        discrepancy_change_status(
            discrepancy=d, actor=admin_a, status="dismissed", reason="contract says volume"
        )
        # the provider fixed the first account's invoice
        wrong.lines.filter(meter=world.meter).update(amount=D("157.00"))
    second = world.run()
    with tenant_context(tenant_a):
        first.refresh_from_db()
        assert first.superseded_by == second
        cleared = Discrepancy.objects.get(account=fixed)
        kept = Discrepancy.objects.get(account=dismissed)
        assert cleared.status == "auto_cleared" and cleared.last_seen_run == second
        assert kept.status == "dismissed", "a resolved finding that reappears unchanged is not reopened"
        assert kept.first_seen_run == first and kept.last_seen_run == second
        assert list(kept.events.values_list("kind", flat=True)) == ["found", "status"]
        assert Discrepancy.objects.count() == 2


def test_materiality_and_routing_rules_apply(tenant_a):
    csm = member(tenant_a, Role.CSM)
    world = World(tenant_a, accounts=2, csm=csm)
    small, over = world.accounts
    for account in world.accounts:
        world.usage(account, "25000", OCT_1 + dt.timedelta(days=3))
    world.invoice(small, OCT_1, NOV_1, units=25, amount="156.50")
    world.invoice(over, OCT_1, NOV_1, units=30, amount="182.00")
    with tenant_context(tenant_a):
        Threshold.objects.create(segment="", meter=None, absolute=D("1.00"))
        RoutingRule.objects.create(classification="under_bill", owner_role=Role.FINANCE_ANALYST)
    lines = world.lines(world.run())
    assert lines[("acct-0", "api_calls")].classification == "within_tolerance"
    assert lines[("acct-1", "api_calls")].classification == "over_bill"
    with tenant_context(tenant_a):
        finding = Discrepancy.objects.get()
    assert (finding.owner_id, finding.status, finding.amount) == (csm.pk, "assigned", D("-25.00"))


def test_a_run_sees_only_its_own_tenants_data(tenant_a, tenant_b):
    mine, theirs = World(tenant_a), World(tenant_b)
    mine.usage(mine.accounts[0], "1000", OCT_1 + dt.timedelta(days=1))
    theirs.usage(theirs.accounts[0], "9000", OCT_1 + dt.timedelta(days=1))
    mine.invoice(mine.accounts[0], OCT_1, NOV_1, units=1, amount="10.00")
    run = mine.run()
    assert run.counts["lines"] == 2
    assert {line.raw_units for key, line in mine.lines(run).items() if key[1]} == {D(1)}


def test_periods_follow_the_accounts_time_zone(tenant_a):
    world = World(tenant_a, timezone="Asia/Tokyo")
    (account,) = world.accounts
    tokyo_oct_1 = dt.datetime(2026, 9, 30, 15, 0, tzinfo=UTC)  # 2026-10-01 00:00 in Tokyo
    world.usage(account, "1000", tokyo_oct_1 - dt.timedelta(seconds=1))  # September in Tokyo
    world.usage(account, "1000", tokyo_oct_1)  # October in Tokyo
    line = world.lines(world.run())[("acct-0", "api_calls")]
    assert line.raw_units == D(1) and line.working["events"]["count"] == 1


def test_a_large_tenant_is_split_into_chunks_and_merged(tenant_a, settings):
    settings.RECONCILIATION_CHUNK_ACCOUNTS = 2
    world = World(tenant_a, accounts=5)
    for account in world.accounts:
        world.usage(account, "25000", OCT_1 + dt.timedelta(days=3))
        world.invoice(account, OCT_1, NOV_1, units=25, amount="125.00")
    run = world.run()
    assert (run.status, run.chunks_total, run.chunks_done, run.progress) == ("succeeded", 3, 3, 100)
    assert run.counts["lines"] == 10 and run.counts["by_class"] == {"matched": 5, "under_bill": 5}
    assert run.counts["findings"] == {"new": 5}
    with tenant_context(tenant_a):
        assert Discrepancy.objects.count() == 5


@pytest.mark.redis
@pytest.mark.postgres  # parallel writers need a real database server
@pytest.mark.django_db(transaction=True)
def test_chunks_run_in_parallel_on_real_workers_over_redis(tenant_a, settings):
    import socket

    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    settings.RECONCILIATION_CHUNK_ACCOUNTS = 3
    world = World(tenant_a, accounts=8)
    for account in world.accounts:
        world.usage(account, "25000", OCT_1 + dt.timedelta(days=3))
        world.invoice(account, OCT_1, NOV_1, units=25, amount="157.00")
    import apps.reconciliation.tasks  # noqa: F401 - registers the shared tasks with the new app

    app = Celery("trueup-chunks", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.update(broker_url="redis://127.0.0.1:6379/13", task_always_eager=False)
    with tenant_context(tenant_a):
        run = ReconciliationRun.objects.create(period="2026-10")
    import threading
    import time

    from celery import current_app
    from celery.signals import task_prerun

    ran: list[tuple[str, int]] = []

    def record(sender=None, **kwargs):
        ran.append((sender.name, threading.get_ident()))

    task_prerun.connect(record, weak=False)
    previous = current_app._get_current_object()
    app.set_current()  # as in a worker process: tasks queued by tasks go to this app's broker
    try:
        with start_worker(app, pool="threads", concurrency=3, perform_ping_check=False, shutdown_timeout=20):
            app.send_task("apps.reconciliation.tasks.reconcile_run", args=[tenant_a.pk, run.pk])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with tenant_context(tenant_a):
                    run.refresh_from_db()
                if run.status in ("succeeded", "failed"):
                    break
                time.sleep(0.2)
    finally:
        previous.set_current()
        previous.set_default()  # start_worker made the test app every thread's default: undo it
        task_prerun.disconnect(record)
    assert (run.status, run.chunks_total, run.chunks_done) == ("succeeded", 3, 3), run.error
    chunk_threads = {ident for name, ident in ran if name.endswith("reconcile_run_chunk")}
    assert len([name for name, _ in ran if name.endswith("reconcile_run_chunk")]) == 3
    assert len(chunk_threads) > 1, "the chunks ran on more than one worker thread"
    assert run.counts["lines"] == 16 and run.counts["by_class"] == {"matched": 16}


def test_a_reconciled_period_locks_the_plan_versions_it_used(tenant_a):
    from django.core.exceptions import ValidationError

    world = World(tenant_a)
    world.usage(world.accounts[0], "1000", OCT_1 + dt.timedelta(days=1))
    world.invoice(world.accounts[0], OCT_1, NOV_1, units=1, amount="10.00")
    world.run()
    with tenant_context(tenant_a):
        world.version.refresh_from_db()
        assert world.version.is_locked
        with pytest.raises(ValidationError, match="can no longer change"):
            charge_save(actor=None, version=world.version, meter=world.meter, spec=SEED)


def test_the_tenants_rounding_mode_is_used(tenant_a):
    from apps.tenancy.models import Tenant

    Tenant.objects.filter(pk=tenant_a.pk).update(rounding_mode="ROUND_HALF_EVEN")
    world = World(tenant_a)
    with tenant_context(tenant_a):
        world.version.base_fee = D("10.125")  # half-up: 10.13; half-even: 10.12
        world.version.save(update_fields=["base_fee"])
    world.invoice(world.accounts[0], OCT_1, NOV_1, units=0, amount="0", fee="10.12")
    lines = world.lines(world.run())
    assert lines[("acct-0", None)].expected_amount == D("10.12")


def test_the_scheduled_task_reconciles_last_month_for_every_tenant(tenant_a, tenant_b):
    from apps.reconciliation.tasks import reconcile_last_month

    with TestCase.captureOnCommitCallbacks(execute=True):
        assert reconcile_last_month.delay("2026-10").get() == 2
    for tenant in (tenant_a, tenant_b):
        with tenant_context(tenant):
            run = ReconciliationRun.objects.get()
            assert (run.trigger, run.period, run.status) == ("schedule", "2026-10", "succeeded")
