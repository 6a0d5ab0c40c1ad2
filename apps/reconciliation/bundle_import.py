"""Loading an export bundle into a tenant, so its period can be reconciled and explored in the app.

The bundle's own readers check every row (the same checks as ``reconcile_bundle``); what
they accept is written to the tenant's tables, and re-importing the same bundle changes
nothing: rows are found again by their ids rather than added twice.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from django.db import transaction

from apps import pricing
from apps.accounts.models import Account
from apps.audit.services import Actor, audit_record
from apps.billing.models import CreditNote, CreditNoteLine, Invoice, InvoiceLine, MeteredUsage
from apps.catalog.models import Meter, Plan, PlanVersion, SubscriptionPhase
from apps.catalog.selectors import engine_charge
from apps.catalog.services import ChargeSpec, charge_save, meter_create, plan_create, plan_version_create
from apps.reconciliation import core
from apps.reconciliation.bundle import BundleError, BundleSource, ImportIssue
from apps.reconciliation.bundle.reader import PRICING, read_events
from apps.reconciliation.bundle.rows import ImportLog, read_rows
from apps.reconciliation.bundle.tables import (
    read_accounts,
    read_credits,
    read_invoices,
    read_metered,
    read_subscriptions,
)
from apps.usage.models import EventSource, IngestBatch, UsageEvent

EVENT_CHUNK = 5000
SOURCE = "bundle"


@dataclass
class BundleImportSummary:
    period: str
    created: Counter[str] = field(default_factory=Counter)
    unchanged: Counter[str] = field(default_factory=Counter)
    import_errors: tuple[ImportIssue, ...] = ()
    import_error_count: int = 0


def infer_period(path: str | Path) -> core.Month:
    """The month most invoices of the bundle start in (its ``invoices.csv``)."""
    log = ImportLog()
    months: Counter[str] = Counter()
    with BundleSource(path) as source:
        for row in read_rows(source, "invoices.csv", ("period_start",), log):
            start = row.timestamp("period_start")
            if start is not None:
                months[f"{start.year:04d}-{start.month:02d}"] += 1
    if not months:
        raise BundleError("invoices.csv has no readable invoice: give the period with --period YYYY-MM")
    return core.Month.parse(months.most_common(1)[0][0])


def bundle_import(
    *, path: str | Path, month: core.Month, actor: Actor, progress: Callable[[str], None] | None = None
) -> BundleImportSummary:
    """Import the bundle at ``path`` into the tenant in context (one transaction: all or nothing)."""
    summary = BundleImportSummary(period=str(month))
    log = ImportLog()
    say = progress or (lambda _message: None)
    with BundleSource(path) as source, transaction.atomic():
        try:
            with source.open_text(PRICING) as stream:
                raw_catalog = json.load(stream)
            catalog = pricing.parse_catalog(raw_catalog)
        except (json.JSONDecodeError, pricing.PricingValidationError) as exc:
            raise BundleError(f"{PRICING} is not a valid pricing catalogue: {exc}") from exc
        bundle_accounts = read_accounts(source, log)
        phases = read_subscriptions(source, log, bundle_accounts, catalog)
        invoices = read_invoices(source, log, month, bundle_accounts, catalog, phases)
        credits = read_credits(source, log, bundle_accounts, catalog, invoices)
        metered = read_metered(source, log, bundle_accounts, catalog)
        say("catalogue and accounts")
        since = min((p.starts_at for p in phases), default=month.bounds(dt.UTC)[0])  # type: ignore[arg-type]
        meters, plans = _sync_catalog(catalog, since, actor, summary)
        accounts = _sync_accounts(bundle_accounts, actor, summary)
        _sync_phases(phases, accounts, plans, summary)
        say("invoices, credit notes and metered usage")
        _sync_invoices(invoices.lines, accounts, meters, summary)
        _sync_credits(credits, accounts, meters, summary)
        _sync_metered(metered, accounts, meters, summary)
        say("usage events")
        _load_events(source, log, accounts, meters, summary, say)
        audit_record(
            actor=actor,
            action="bundle.import",
            after={"period": summary.period, "created": dict(summary.created), "import_errors": log.count},
        )
    summary.import_errors, summary.import_error_count = log.listed(), log.count
    return summary


def _sync_catalog(
    catalog: pricing.Catalog, since: dt.datetime, actor: Actor, summary: BundleImportSummary
) -> tuple[dict[str, Meter], dict[str, Plan]]:
    meters = {m.key: m for m in Meter.objects.all()}
    for meter in catalog.meters:
        if meter.key not in meters:
            meters[meter.key] = meter_create(
                actor=actor,
                key=meter.key,
                name=meter.name,
                unit_size=meter.unit_rule.unit_size,
                rounding=meter.unit_rule.rounding,
            )
            summary.created["meters"] += 1
    plans = {p.key: p for p in Plan.objects.all()}
    for spec in catalog.plans:
        plan = plans.get(spec.key)
        if plan is None:
            plan = plans[spec.key] = plan_create(
                actor=actor, key=spec.key, name=spec.name, currency=spec.currency
            )
            summary.created["plans"] += 1
        version = (
            PlanVersion.objects.filter(plan=plan, effective_from__lte=since)
            .order_by("-effective_from")
            .first()
        )
        if version is not None and _same_prices(version, spec):
            summary.unchanged["plan versions"] += 1
            continue
        version = plan_version_create(
            actor=actor, plan=plan, effective_from=since, base_fee=spec.base_fee, note="from an export bundle"
        )
        for plan_charge in spec.charges:
            charge_save(
                actor=actor,
                version=version,
                meter=meters[plan_charge.meter],
                spec=ChargeSpec.from_engine(plan_charge.charge),
            )
        summary.created["plan versions"] += 1
    return meters, plans


def _same_prices(version: PlanVersion, spec: pricing.Plan) -> bool:
    stored = {
        c.meter.key: engine_charge(c)
        for c in version.charges.select_related("meter").prefetch_related("tiers")
    }
    wanted = {pc.meter: pc.charge for pc in spec.charges}
    return version.base_fee == spec.base_fee and stored == wanted


def _sync_accounts(
    bundle_accounts: dict[str, core.Account], actor: Actor, summary: BundleImportSummary
) -> dict[str, Account]:
    from apps.accounts.services import account_create

    accounts = {a.key: a for a in Account.objects.filter(key__in=list(bundle_accounts))}
    for key, spec in bundle_accounts.items():
        if key in accounts:
            summary.unchanged["accounts"] += 1
            continue
        accounts[key] = account_create(
            actor=actor, key=key, name=spec.name or key, segment=spec.segment, timezone=spec.time_zone
        )
        summary.created["accounts"] += 1
    return accounts


def _sync_phases(
    phases: list[core.SubscriptionPhase],
    accounts: dict[str, Account],
    plans: dict[str, Plan],
    summary: BundleImportSummary,
) -> None:
    existing = set(
        SubscriptionPhase.objects.filter(account__in=accounts.values()).values_list(
            "account_id", "plan_id", "starts_at"
        )
    )
    new = []
    for phase in phases:
        account, plan = accounts[phase.account_id], plans[phase.plan.key]
        if (account.pk, plan.pk, phase.starts_at) in existing:
            summary.unchanged["subscription phases"] += 1
            continue
        new.append(
            SubscriptionPhase(account=account, plan=plan, starts_at=phase.starts_at, ends_at=phase.ends_at)
        )
    SubscriptionPhase.objects.bulk_create(new)
    summary.created["subscription phases"] += len(new)


def _meter_of(meters: dict[str, Meter], key: str | None) -> Meter | None:
    return meters[key] if key else None


def _sync_invoices(
    lines: list[core.InvoiceLine],
    accounts: dict[str, Account],
    meters: dict[str, Meter],
    summary: BundleImportSummary,
) -> None:
    by_invoice: dict[str, list[core.InvoiceLine]] = {}
    for line in lines:
        by_invoice.setdefault(line.invoice_id, []).append(line)
    known = {
        i.external_id: i for i in Invoice.objects.filter(source=SOURCE, external_id__in=list(by_invoice))
    }
    for invoice_id, invoice_lines in by_invoice.items():
        head = invoice_lines[0]
        if invoice_id in known:
            summary.unchanged["invoices"] += 1
            continue
        invoice = Invoice.objects.create(
            account=accounts[head.account_id],
            source=SOURCE,
            external_id=invoice_id,
            status=head.status,
            currency=head.currency,
            period_start=head.period_start,
            period_end=head.period_end,
            finalized_at=head.finalized_at,
        )
        merged: dict[str | None, tuple[Decimal, Decimal]] = {}
        for line in invoice_lines:  # split lines of one meter are one line to reconcile
            quantity, amount = merged.get(line.meter, (Decimal(0), Decimal(0)))
            merged[line.meter] = (quantity + line.quantity, amount + line.amount)
        InvoiceLine.objects.bulk_create(
            InvoiceLine(invoice=invoice, meter=_meter_of(meters, meter), quantity=quantity, amount=amount)
            for meter, (quantity, amount) in merged.items()
        )
        summary.created["invoices"] += 1


def _sync_credits(
    credits: list[core.CreditNote],
    accounts: dict[str, Account],
    meters: dict[str, Meter],
    summary: BundleImportSummary,
) -> None:
    invoices = {
        i.external_id: i
        for i in Invoice.objects.filter(source=SOURCE, external_id__in={c.invoice_id for c in credits})
    }
    known = set(CreditNote.objects.filter(source=SOURCE).values_list("external_id", flat=True))
    notes: dict[str, CreditNote] = {}
    for credit in credits:
        if credit.credit_note_id in known or credit.invoice_id not in invoices:
            summary.unchanged["credit notes"] += credit.credit_note_id in known
            continue
        note = notes.get(credit.credit_note_id)
        if note is None:
            note = notes[credit.credit_note_id] = CreditNote.objects.create(
                invoice=invoices[credit.invoice_id],
                source=SOURCE,
                external_id=credit.credit_note_id,
                reason=credit.reason,
                issued_at=credit.issued_at or invoices[credit.invoice_id].period_end,
            )
            summary.created["credit notes"] += 1
        CreditNoteLine.objects.create(
            credit_note=note, meter=_meter_of(meters, credit.meter), amount=credit.amount
        )


def _sync_metered(
    metered: list[core.MeteredUsage],
    accounts: dict[str, Account],
    meters: dict[str, Meter],
    summary: BundleImportSummary,
) -> None:
    for row in metered:
        _, created = MeteredUsage.objects.update_or_create(
            account=accounts[row.account_id],
            meter=meters[row.meter],
            source=SOURCE,
            period_start=row.period_start,
            period_end=row.period_end,
            defaults={"quantity": row.quantity},
        )
        summary.created["metered counts"] += created
        summary.unchanged["metered counts"] += not created


def _load_events(
    source: BundleSource,
    log: ImportLog,
    accounts: dict[str, Account],
    meters: dict[str, Meter],
    summary: BundleImportSummary,
    say: Callable[[str], None],
) -> None:
    """Stream events.csv in chunks; an event id already stored (in this bundle or before) is skipped."""
    batch = IngestBatch.objects.create(source=EventSource.BUNDLE)
    chunk: list[UsageEvent] = []
    read = 0

    def flush() -> None:
        UsageEvent.objects.bulk_create(chunk, ignore_conflicts=True, batch_size=EVENT_CHUNK)
        chunk.clear()

    for event in read_events(source, log, accounts, meters, lambda _name, rows: say(f"{rows:,} events read")):
        read += 1
        chunk.append(
            UsageEvent(
                event_id=event.event_id,
                account=accounts[event.account_id],
                meter=meters[event.meter],
                quantity=event.quantity,
                occurred_at=event.occurred_at,
                received_at=event.received_at,
                source=EventSource.BUNDLE,
                batch=batch,
            )
        )
        if len(chunk) >= EVENT_CHUNK:
            flush()
    if chunk:
        flush()
    stored = UsageEvent.objects.filter(batch=batch).count()
    summary.created["events"] = stored
    summary.unchanged["events (already stored or repeated)"] = read - stored
    IngestBatch.objects.filter(pk=batch.pk).update(
        events=read, accepted=stored, duplicates=read - stored, rejected=log.count
    )
