"""Running a reconciliation and keeping its findings: lines, discrepancies, routing, the watch-list."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps import pricing
from apps.accounts.models import Account
from apps.audit.services import Actor, audit_record
from apps.catalog.models import PlanVersion
from apps.reconciliation import core
from apps.reconciliation.loading import PeriodInputs, aggregate_usage, load_inputs
from apps.reconciliation.models import (
    NEEDS_ACTION,
    Discrepancy,
    DiscrepancyEvent,
    ReconciliationLine,
    ReconciliationRun,
    RoutingRule,
    Threshold,
)
from apps.tenancy.context import tenant_context
from apps.tenancy.models import Tenant
from apps.tenancy.roles import Role
from apps.users.models import User

log = logging.getLogger(__name__)
ZERO = Decimal(0)
OPEN_STATES = (Discrepancy.Status.OPEN, Discrepancy.Status.ASSIGNED, Discrepancy.Status.ESCALATED)
DEFAULT_ROUTES = {
    "under_bill": Role.REVOPS,
    "over_bill": Role.CSM,  # the account's CSM when it has one
    "timing": "",  # the watch-list: no owner until it escalates
    "credit": Role.FINANCE_ANALYST,
    "proration": Role.FINANCE_ANALYST,
}


def run_create(
    *,
    actor: Actor,
    period: str,
    trigger: str = ReconciliationRun.Trigger.MANUAL,
    account_ids: Sequence[int] | None = None,
    pre_invoice: bool = False,
) -> ReconciliationRun:
    """Queue a run of ``period`` (YYYY-MM) for the tenant in context; the task does the work."""
    core.Month.parse(period)  # refuse a malformed period before anything is stored
    run = ReconciliationRun(
        period=period,
        trigger=trigger,
        pre_invoice=pre_invoice,
        account_ids=list(account_ids) if account_ids is not None else None,
        started_by=actor if isinstance(actor, User) else None,
    )
    run.save()
    audit_record(actor=actor, action="run.create", target=run, after={"period": period, "trigger": trigger})
    transaction.on_commit(lambda: _enqueue(run))
    return run


def _enqueue(run: ReconciliationRun) -> None:
    from apps.reconciliation.tasks import reconcile_run

    reconcile_run.delay(run.tenant_id, run.pk)


def _progress(tenant_id: int, run_id: int, percent: int, note: str, **fields: Any) -> None:
    """Record progress in its own transaction, so the screens see it while the run goes on."""
    with tenant_context(tenant_id):
        ReconciliationRun.objects.filter(pk=run_id).update(progress=percent, progress_note=note, **fields)


def materiality_for(thresholds: list[Threshold]) -> core.MaterialityFor:
    """The most specific threshold for a line: segment+meter, meter, segment, then the tenant default."""
    table = {
        (t.segment, t.meter.key if t.meter else None): core.Materiality(t.absolute, t.relative)
        for t in thresholds
    }
    default = table.get(("", None), core.Materiality())

    def pick(account: core.Account, meter: str | None) -> core.Materiality:
        for key in ((account.segment, meter), ("", meter), (account.segment, None)):
            if key in table and (key[0] or key[1] is not None):
                return table[key]
        return default

    return pick


def execute_run(tenant_id: int, run_id: int) -> ReconciliationRun:
    """Start a run: split its accounts into chunks, reconcile each (in parallel on workers), then merge.

    A small tenant is one chunk, done right here. Each chunk stores its own lines and
    findings (they are per account, so chunks never touch the same rows); the last chunk
    to finish merges the counts and supersedes the period's earlier runs.
    """
    with tenant_context(tenant_id):
        run = ReconciliationRun.objects.get(pk=run_id)
        accounts = Account.objects.order_by("pk")
        if run.account_ids is not None:
            accounts = accounts.filter(pk__in=run.account_ids)
        ids = list(accounts.values_list("pk", flat=True))
        size = max(1, settings.RECONCILIATION_CHUNK_ACCOUNTS)
        chunks = [ids[i : i + size] for i in range(0, len(ids), size)] or [[]]
        ReconciliationRun.objects.filter(pk=run_id).update(
            status=ReconciliationRun.Status.RUNNING,
            started_at=timezone.now(),
            chunks_total=len(chunks),
            chunks_done=0,
            progress=2,
            progress_note=f"Reconciling {len(ids)} accounts in {len(chunks)} chunk(s)",
        )
    if len(chunks) == 1:
        reconcile_chunk(tenant_id, run_id, chunks[0], report_steps=True)
    else:
        from apps.reconciliation.tasks import reconcile_run_chunk

        for chunk in chunks:
            reconcile_run_chunk.delay(tenant_id, run_id, chunk)
    with tenant_context(tenant_id):
        return ReconciliationRun.objects.get(pk=run_id)


def reconcile_chunk(
    tenant_id: int, run_id: int, account_ids: list[int], *, report_steps: bool = False
) -> None:
    """Reconcile some of a run's accounts: load (set-based), price and classify (the core), store."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def step(percent: int, note: str) -> None:
        if report_steps:
            _progress(tenant_id, run_id, percent, note)

    try:
        step(5, "Loading invoices, credits, metered usage and the catalogue")
        with tenant_context(tenant_id):
            run = ReconciliationRun.objects.get(pk=run_id)
            month = core.Month.parse(run.period)
            inputs = load_inputs(month, account_ids)
            periods = core.resolve_periods(
                month=month,
                accounts=[_core_account(a) for a in inputs.accounts.values()],
                phases=inputs.phases,
                invoices=core.invoice_headers(inputs.invoice_lines),
                run_time=timezone.now(),
            )
            thresholds = list(Threshold.objects.select_related("meter"))
            tenant = Tenant.objects.get(pk=tenant_id)
        timings["load"] = time.perf_counter() - clock
        step(25, "Aggregating usage events")
        clock = time.perf_counter()
        with tenant_context(tenant_id):
            usage, usage_digest = aggregate_usage(periods, inputs)
            watching = _watch_list(run, inputs)
            carried = _watch_list_carry(watching, inputs, periods, usage)
        timings["aggregate"] = time.perf_counter() - clock
        step(55, "Pricing and classifying every line")
        clock = time.perf_counter()
        result = core.reconcile(
            periods=periods,
            meters=inputs.core_meters,
            usage=usage,
            metered=inputs.metered,
            invoice_lines=inputs.invoice_lines,
            credits=inputs.credits,
            materiality=materiality_for(thresholds),
            pricing=core.Pricing(proration=tenant.proration, rounding=tenant.rounding_mode),  # type: ignore[arg-type]
        )
        timings["classify"] = time.perf_counter() - clock
        step(80, f"Storing {len(result.lines)} lines and their findings")
        clock = time.perf_counter()
        with tenant_context(tenant_id):
            counts = _store(run, inputs, result, watching, carried)
            timings["store"] = time.perf_counter() - clock
            _merge_chunk(run_id, counts, {**inputs.checksums, "usage": usage_digest}, timings)
    except Exception as exc:
        log.exception("reconciliation run %s failed", run_id)
        _progress(
            tenant_id,
            run_id,
            100,
            "Failed",
            status=ReconciliationRun.Status.FAILED,
            error=f"{exc.__class__.__name__}: {exc}",
            finished_at=timezone.now(),
        )
        raise


def _merge_chunk(
    run_id: int, counts: dict[str, Any], checksums: dict[str, str], timings: dict[str, float]
) -> None:
    """Add one chunk's results to its run (row-locked); the last chunk finishes the run."""
    run = ReconciliationRun.objects.select_for_update().get(pk=run_id)
    total = run.counts or {"lines": 0, "by_class": {}, "findings": {}}
    total["lines"] = total.get("lines", 0) + counts["lines"]
    for group in ("by_class", "findings"):
        merged = Counter(total.get(group, {}))
        merged.update(counts.get(group, {}))
        total[group] = dict(merged)
    sums = {name: round(run.timings.get(name, 0) + value, 4) for name, value in timings.items()}
    digests = dict(run.input_checksums)
    for name, value in checksums.items():  # order-independent: a digest of the chunks' digests
        digests[name] = (
            hashlib.sha256((digests.get(name, "") + value).encode()).hexdigest() if name in digests else value
        )
    run.chunks_done += 1
    run.counts, run.timings, run.input_checksums = total, sums, digests
    fields = ["chunks_done", "counts", "timings", "input_checksums", "progress", "progress_note"]
    if run.chunks_done >= run.chunks_total:
        run.status, run.progress, run.progress_note = ReconciliationRun.Status.SUCCEEDED, 100, "Done"
        run.finished_at = timezone.now()
        fields += ["status", "finished_at"]
        _supersede_earlier(run)
    else:
        run.progress = 5 + int(90 * run.chunks_done / max(run.chunks_total, 1))
        run.progress_note = f"{run.chunks_done} of {run.chunks_total} chunks reconciled"
    run.save(update_fields=fields)


def _supersede_earlier(run: ReconciliationRun) -> None:
    earlier = ReconciliationRun.objects.filter(
        period=run.period, status=ReconciliationRun.Status.SUCCEEDED, superseded_by__isnull=True
    ).exclude(pk=run.pk)
    if run.account_ids is not None:  # a partial run supersedes only partial runs it covers
        earlier = [
            r for r in earlier if r.account_ids is not None and set(r.account_ids) <= set(run.account_ids)
        ]
    ReconciliationRun.objects.filter(pk__in=[r.pk for r in earlier]).update(superseded_by=run)


def _core_account(account: Account) -> core.Account:
    return core.Account(
        id=account.key, name=account.name, segment=account.segment, time_zone=account.timezone
    )


def _late_quantity(line: ReconciliationLine) -> Decimal:
    quantities = (line.working or {}).get("quantities") or {}
    raw, on_time = quantities.get("raw"), quantities.get("on_time")
    return Decimal(raw) - Decimal(on_time) if raw is not None and on_time is not None else ZERO


def _watch_list(run: ReconciliationRun, inputs: PeriodInputs) -> list[Discrepancy]:
    """The previous period's open timing findings of the run's accounts (read once per chunk)."""
    return list(
        Discrepancy.objects.filter(
            period=str(core.Month.parse(run.period).previous()),
            classification="timing",
            status__in=OPEN_STATES,
            account__in=[a.pk for a in inputs.accounts.values()],
        ).select_related("line", "account", "meter")
    )


def _watch_list_carry(
    watching: list[Discrepancy],
    inputs: PeriodInputs,
    periods: dict[str, core.AccountPeriod],
    usage: dict[tuple[str, str], core.MeterUsage],
) -> dict[tuple[str, str], Discrepancy]:
    """Timing findings of the previous period whose late units this period's invoice carries.

    Their late quantity joins this period's usage (on time, in the last phase), so it is
    priced where it was billed and not flagged as an over-bill; the finding then clears.
    """
    invoiced_units = {
        (line.account_id, line.meter): line.quantity for line in inputs.invoice_lines if line.meter
    }
    carried: dict[tuple[str, str], Discrepancy] = {}
    for finding in watching:
        if finding.meter is None:
            continue
        key = (finding.account.key, finding.meter.key)
        period = periods.get(key[0])
        late = _late_quantity(finding.line)
        if period is None or key not in invoiced_units or late <= 0:
            continue
        rule = inputs.core_meters[key[1]].unit_rule
        used = usage.get(key)
        raw_now = used.total if used else ZERO
        with_late = pricing.to_billing_units(raw_now + late, rule.unit_size, rule.rounding)
        without = pricing.to_billing_units(raw_now, rule.unit_size, rule.rounding)
        if invoiced_units[key] == with_late and with_late != without:
            slots = len(period.phases) + 1
            used = usage.setdefault(key, core.MeterUsage.empty(key[0], key[1], slots))
            slot = max(len(period.phases) - 1, 0)
            used.quantity[slot] += late
            used.on_time_quantity[slot] += late
            used.events += 1
            carried[key] = finding
    return carried


def _store(
    run: ReconciliationRun,
    inputs: PeriodInputs,
    result: core.Reconciliation,
    watching: list[Discrepancy],
    carried: dict[tuple[str, str], Discrepancy],
) -> dict[str, Any]:
    lines = []
    for line in result.lines:
        account = inputs.accounts[line.account_id]
        meter = inputs.meters[line.meter] if line.meter else None
        working = line.working.as_dict(line.currency)
        if line.meter and (line.account_id, line.meter) in carried:
            working["notes"] = [
                *working.get("notes", []),
                f"includes late usage of {carried[(line.account_id, line.meter)].period} "
                "billed on this invoice",
            ]
        lines.append(
            ReconciliationLine(
                run=run,
                account=account,
                meter=meter,
                invoice_line_id=inputs.invoice_line_ids.get((line.account_id, line.meter)),
                currency=line.currency,
                raw_units=line.raw_units,
                on_time_units=line.on_time_units,
                metered_units=line.metered_units,
                invoiced_units=line.invoiced_units,
                expected_amount=line.expected_amount,
                invoiced_amount=line.invoiced_amount,
                credited_amount=line.credited_amount,
                billed_amount=line.billed_amount,
                difference=line.difference,
                classification=line.classification,
                direction=line.direction,
                source=line.source or "",
                material=line.working.material,
                working=working,
            )
        )
    ReconciliationLine.objects.bulk_create(lines, batch_size=2000)
    findings = _upsert_discrepancies(run, inputs, lines)
    _settle_watch_list(run, inputs, watching, carried)
    # The prices a reconciled period used are now evidence: their versions can no longer change.
    PlanVersion.objects.filter(pk__in=inputs.version_ids, locked_at__isnull=True).update(
        locked_at=timezone.now()
    )
    by_class = Counter(line.classification for line in lines)
    return {"lines": len(lines), "by_class": dict(by_class), **findings}


def _route(
    classification: str, account: Account, meter_id: int | None, rules: list[RoutingRule]
) -> tuple[str, User | None]:
    """(owner role, owner) for a finding: the most specific routing rule, else the product's defaults."""

    def score(rule: RoutingRule) -> int:
        return (2 if rule.segment else 0) + (1 if rule.meter_id else 0)

    matching = [
        r
        for r in rules
        if r.classification == classification
        and (not r.segment or r.segment == account.segment)
        and (not r.meter_id or r.meter_id == meter_id)
    ]
    if matching:
        rule = max(matching, key=score)
        if rule.to_account_csm and account.csm_owner_id:
            return Role.CSM, account.csm_owner
        return rule.owner_role, rule.owner
    role = DEFAULT_ROUTES.get(classification, Role.FINANCE_ANALYST)
    if classification == "over_bill" and account.csm_owner_id:
        return role, account.csm_owner
    return role, None


def _upsert_discrepancies(
    run: ReconciliationRun, inputs: PeriodInputs, lines: list[ReconciliationLine]
) -> dict[str, dict[str, int]]:
    """One finding per account, meter and period, kept across runs with its history and decisions.

    A finding seen again is updated in place (an open one follows the new numbers; a closed one
    stays closed when nothing changed, and reopens when it did); one no longer found clears itself.
    """
    rules = list(RoutingRule.objects.all())
    scope = [a.pk for a in inputs.accounts.values()]
    existing = {
        (d.account_id, d.meter_id): d
        for d in Discrepancy.objects.filter(period=run.period, account__in=scope)
    }
    seen: set[tuple[int, int | None]] = set()
    created, updated, events = [], [], []
    now = timezone.now()
    stats = Counter[str]()
    accounts_by_pk = {a.pk: a for a in inputs.accounts.values()}
    for line in lines:
        if line.classification not in NEEDS_ACTION:
            continue
        key = (line.account_id, line.meter_id)
        seen.add(key)
        finding = existing.get(key)
        if finding is None:
            role, owner = _route(line.classification, accounts_by_pk[line.account_id], line.meter_id, rules)
            finding = Discrepancy(
                account_id=line.account_id,
                meter_id=line.meter_id,
                period=run.period,
                line=line,
                classification=line.classification,
                direction=line.direction,
                source=line.source,
                currency=line.currency,
                amount=line.difference,
                owner_role=role,
                owner=owner,
                status=Discrepancy.Status.ASSIGNED if owner else Discrepancy.Status.OPEN,
                first_seen_run=run,
                last_seen_run=run,
                updated_at=now,
            )
            created.append(finding)
            stats["new"] += 1
            continue
        changed = (finding.classification, finding.amount) != (line.classification, line.difference)
        before = finding.status
        if finding.is_closed and changed:
            finding.status = Discrepancy.Status.OPEN
            events.append(
                DiscrepancyEvent(
                    discrepancy=finding,
                    run=run,
                    kind="reopened",
                    from_status=before,
                    to_status=finding.status,
                    text=f"Found again by run {run.pk} with different numbers: "
                    f"{finding.amount} → {line.difference}",
                )
            )
            stats["reopened"] += 1
        elif changed:
            events.append(
                DiscrepancyEvent(
                    discrepancy=finding,
                    run=run,
                    kind="updated",
                    text=f"Run {run.pk}: {finding.get_classification_display()} "
                    f"{finding.amount} → {line.classification} {line.difference}",
                )
            )
            stats["updated"] += 1
        else:
            stats["unchanged"] += 1
        finding.line, finding.last_seen_run, finding.updated_at = line, run, now
        finding.classification, finding.direction, finding.source = (
            line.classification,
            line.direction,
            line.source,
        )
        finding.amount, finding.currency = line.difference, line.currency
        updated.append(finding)
    Discrepancy.objects.bulk_create(created, batch_size=2000)
    for finding in created:
        events.append(
            DiscrepancyEvent(
                discrepancy=finding,
                run=run,
                kind="found",
                to_status=finding.status,
                text=f"Found by run {run.pk}; routed to "
                f"{finding.owner or finding.get_owner_role_display() or 'the watch-list'}",
            )
        )
    for key, finding in existing.items():
        if key not in seen and finding.status in OPEN_STATES:
            events.append(
                DiscrepancyEvent(
                    discrepancy=finding,
                    run=run,
                    kind="cleared",
                    from_status=finding.status,
                    to_status=Discrepancy.Status.AUTO_CLEARED,
                    text=f"No longer found by run {run.pk}",
                )
            )
            finding.status, finding.last_seen_run, finding.updated_at = (
                Discrepancy.Status.AUTO_CLEARED,
                run,
                now,
            )
            updated.append(finding)
            stats["cleared"] += 1
    Discrepancy.objects.bulk_update(
        updated,
        [
            "line",
            "last_seen_run",
            "updated_at",
            "classification",
            "direction",
            "source",
            "amount",
            "currency",
            "status",
        ],
        batch_size=2000,
    )
    DiscrepancyEvent.objects.bulk_create(events, batch_size=2000)
    return {"findings": dict(stats)}


def _settle_watch_list(
    run: ReconciliationRun,
    inputs: PeriodInputs,
    watching: list[Discrepancy],
    carried: dict[tuple[str, str], Discrepancy],
) -> None:
    """Close the previous period's timing findings: cleared when billed now, escalated when never billed."""
    finalized = {
        line.account_id for line in inputs.invoice_lines if line.status in ("finalized", "paid", "open")
    }
    now = timezone.now()
    events, changed = [], []
    for finding in watching:
        key = (finding.account.key, finding.meter.key if finding.meter else None)
        if key in carried:
            events.append(
                DiscrepancyEvent(
                    discrepancy=finding,
                    run=run,
                    kind="cleared",
                    from_status=finding.status,
                    to_status=Discrepancy.Status.AUTO_CLEARED,
                    text=f"The late units were billed on the {run.period} invoice",
                )
            )
            finding.status = Discrepancy.Status.AUTO_CLEARED
        elif key[0] in finalized:
            events.append(
                DiscrepancyEvent(
                    discrepancy=finding,
                    run=run,
                    kind="escalated",
                    from_status=finding.status,
                    to_status=Discrepancy.Status.ESCALATED,
                    text=f"The late units were not billed on the {run.period} invoice either: leakage",
                )
            )
            finding.status, finding.classification = Discrepancy.Status.ESCALATED, "under_bill"
            finding.owner_role = DEFAULT_ROUTES["under_bill"]
        else:
            continue
        finding.updated_at = now
        changed.append(finding)
    Discrepancy.objects.bulk_update(changed, ["status", "classification", "owner_role", "updated_at"])
    DiscrepancyEvent.objects.bulk_create(events)


def discrepancy_change_status(
    *, discrepancy: Discrepancy, actor: Actor, status: str, reason: str = ""
) -> Discrepancy:
    """Move a finding along its life (resolved, dismissed with a reason, reopened...), with its history."""
    if status == Discrepancy.Status.DISMISSED and not reason.strip():
        from django.core.exceptions import ValidationError

        raise ValidationError({"reason": "Dismissing needs a reason."})
    before = discrepancy.status
    Discrepancy.objects.filter(pk=discrepancy.pk).update(status=status, updated_at=timezone.now())
    discrepancy.status = status
    DiscrepancyEvent(
        discrepancy=discrepancy,
        actor=actor if isinstance(actor, User) else None,
        kind="status",
        from_status=before,
        to_status=status,
        text=reason,
    ).save()
    audit_record(
        actor=actor,
        action="discrepancy.status",
        target=discrepancy,
        before={"status": before},
        after={"status": status},
        reason=reason,
    )
    return discrepancy


def discrepancy_assign(*, discrepancy: Discrepancy, actor: Actor, owner: User | None) -> Discrepancy:
    """Give a finding to a person (or back to its role); an open finding becomes assigned."""
    before = {"owner": discrepancy.owner_id, "status": discrepancy.status}
    status = discrepancy.status
    if owner is not None and status == Discrepancy.Status.OPEN:
        status = Discrepancy.Status.ASSIGNED
    Discrepancy.objects.filter(pk=discrepancy.pk).update(
        owner=owner, status=status, updated_at=timezone.now()
    )
    DiscrepancyEvent(
        discrepancy=discrepancy,
        actor=actor if isinstance(actor, User) else None,
        kind="assigned",
        from_status=discrepancy.status,
        to_status=status,
        text=f"Assigned to {owner}" if owner else "Unassigned",
    ).save()
    discrepancy.owner, discrepancy.status = owner, status
    audit_record(
        actor=actor,
        action="discrepancy.assign",
        target=discrepancy,
        before=before,
        after={"owner": owner.pk if owner else None, "status": status},
    )
    return discrepancy


def discrepancy_comment(*, discrepancy: Discrepancy, actor: Actor, text: str) -> DiscrepancyEvent:
    if not text.strip():
        from django.core.exceptions import ValidationError

        raise ValidationError({"text": "Write something to comment."})
    event = DiscrepancyEvent(
        discrepancy=discrepancy,
        actor=actor if isinstance(actor, User) else None,
        kind="comment",
        text=text.strip(),
    )
    event.save()
    Discrepancy.objects.filter(pk=discrepancy.pk).update(updated_at=timezone.now())
    audit_record(actor=actor, action="discrepancy.comment", target=discrepancy, after={"text": text.strip()})
    return event


@transaction.atomic
def discrepancies_bulk(
    *, ids: list[int], actor: Actor, action: str, owner: User | None = None, reason: str = ""
) -> int:
    """Assign or dismiss many findings at once (each one audited, each with its own history)."""
    rows = list(Discrepancy.objects.filter(pk__in=ids))
    for finding in rows:
        if action == "assign":
            discrepancy_assign(discrepancy=finding, actor=actor, owner=owner)
        elif action == "dismiss":
            discrepancy_change_status(
                discrepancy=finding, actor=actor, status=Discrepancy.Status.DISMISSED, reason=reason
            )
        else:
            raise ValueError(f"unknown bulk action {action!r}")
    return len(rows)
