"""Loading one period's inputs from the database into the pure core's records, set-based.

Each table is read with one query for the whole run (or chunk); usage is one GROUP BY
over the period's events, grouped by account, meter and subscription phase, with the
on-time part (received by the cut-off) summed alongside.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Q

from apps import pricing
from apps.accounts.models import Account
from apps.billing.models import CreditNoteLine, InvoiceLine, MeteredUsage
from apps.catalog.models import Meter, PlanVersion, PriceOverride, SubscriptionPhase
from apps.catalog.selectors import engine_charge, engine_unit_rule
from apps.reconciliation import core

ZERO = Decimal(0)
LATE_IDS_PER_LINE = 50
# Months are local to each account; load a window wide enough for every time zone.
WINDOW_MARGIN = dt.timedelta(days=2)


@dataclass
class PeriodInputs:
    """Everything the core needs for one period, plus the maps back to database rows."""

    month: core.Month
    accounts: dict[str, Account]
    meters: dict[str, Meter]
    core_meters: dict[str, pricing.Meter]
    phases: list[core.SubscriptionPhase]
    invoice_lines: list[core.InvoiceLine]
    invoice_line_ids: dict[tuple[str, str | None], int]
    credits: list[core.CreditNote]
    metered: list[core.MeteredUsage]
    checksums: dict[str, str] = field(default_factory=dict)
    version_ids: set[int] = field(default_factory=set)


def month_window(month: core.Month) -> tuple[dt.datetime, dt.datetime]:
    start, end = month.bounds(dt.UTC)  # type: ignore[arg-type]  # any zone: only the UTC bounds matter
    return start - WINDOW_MARGIN, end + WINDOW_MARGIN


def _digest(rows: Iterable[object]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(repr(row).encode())
    return digest.hexdigest()


def _plan_at(version_of: dict[int, list[PlanVersion]], plan_id: int, at: dt.datetime) -> PlanVersion | None:
    candidates = [v for v in version_of.get(plan_id, []) if v.effective_from <= at]
    return max(candidates, key=lambda v: v.effective_from) if candidates else None


def load_inputs(month: core.Month, account_ids: Sequence[int] | None = None) -> PeriodInputs:
    """Read the period's accounts, catalogue, phases, invoices, credits and metered usage (in the tenant)."""
    start, end = month_window(month)
    accounts_qs = Account.objects.all()
    if account_ids is not None:
        accounts_qs = accounts_qs.filter(pk__in=account_ids)
    accounts = {a.key: a for a in accounts_qs}
    by_pk = {a.pk: a for a in accounts.values()}
    meters = {m.key: m for m in Meter.objects.all()}
    meter_by_pk = {m.pk: m for m in meters.values()}
    core_meters = {
        key: pricing.Meter(key=key, name=m.name, unit_rule=engine_unit_rule(m)) for key, m in meters.items()
    }

    version_of: dict[int, list[PlanVersion]] = {}
    for version in PlanVersion.objects.select_related("plan").prefetch_related(
        "charges__tiers", "charges__meter"
    ):
        version_of.setdefault(version.plan_id, []).append(version)
    overrides = list(
        PriceOverride.objects.filter(effective_from__lt=end)
        .filter(Q(effective_to__isnull=True) | Q(effective_to__gt=start))
        .select_related("charge", "meter")
        .prefetch_related("charge__tiers")
    )

    phases: list[core.SubscriptionPhase] = []
    version_ids: set[int] = set()
    phase_rows = (
        SubscriptionPhase.objects.filter(account_id__in=by_pk, starts_at__lt=end)
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=start))
        .select_related("plan")
        .order_by("starts_at")
    )
    for phase in phase_rows:
        account = by_pk[phase.account_id]
        at = max(phase.starts_at, start + WINDOW_MARGIN)
        version = _plan_at(version_of, phase.plan_id, at)
        if version is None:
            continue  # a plan with no version yet prices nothing; its usage shows as unpriced
        version_ids.add(version.pk)
        phases.append(
            core.SubscriptionPhase(
                account_id=account.key,
                plan=_priced_plan(version, account, overrides, at),
                starts_at=phase.starts_at,
                ends_at=phase.ends_at,
            )
        )

    lines = list(
        InvoiceLine.objects.filter(
            invoice__account_id__in=by_pk, invoice__period_start__gte=start, invoice__period_start__lt=end
        )
        .select_related("invoice")
        .order_by("invoice_id", "meter_id")
    )
    invoice_lines = [
        core.InvoiceLine(
            invoice_id=line.invoice.external_id,
            account_id=by_pk[line.invoice.account_id].key,
            period_start=line.invoice.period_start,
            period_end=line.invoice.period_end,
            status=line.invoice.status,
            finalized_at=line.invoice.finalized_at,
            currency=line.invoice.currency,
            meter=meter_by_pk[line.meter_id].key if line.meter_id else None,
            quantity=pricing.trimmed(line.quantity),
            amount=pricing.trimmed(line.amount),
        )
        for line in lines
    ]
    invoice_line_ids = {
        (
            by_pk[line.invoice.account_id].key,
            meter_by_pk[line.meter_id].key if line.meter_id else None,
        ): line.pk
        for line in lines
        if line.invoice.status != "void"
    }
    credits = [
        core.CreditNote(
            credit_note_id=c.credit_note.external_id,
            invoice_id=c.credit_note.invoice.external_id,
            account_id=by_pk[c.credit_note.invoice.account_id].key,
            meter=meter_by_pk[c.meter_id].key if c.meter_id else None,
            amount=pricing.trimmed(c.amount),
            reason=c.credit_note.reason,
            issued_at=c.credit_note.issued_at,
        )
        for c in CreditNoteLine.objects.filter(credit_note__invoice__in={line.invoice_id for line in lines})
        .select_related("credit_note__invoice")
        .order_by("id")
    ]
    metered = [
        core.MeteredUsage(
            account_id=by_pk[m.account_id].key,
            meter=meter_by_pk[m.meter_id].key,
            period_start=m.period_start,
            period_end=m.period_end,
            quantity=pricing.trimmed(m.quantity),
        )
        for m in MeteredUsage.objects.filter(
            account_id__in=by_pk, period_start__gte=start, period_start__lt=end
        )
    ]
    inputs = PeriodInputs(
        month,
        accounts,
        meters,
        core_meters,
        phases,
        invoice_lines,
        invoice_line_ids,
        credits,
        metered,
        version_ids=version_ids,
    )
    inputs.checksums = {
        "invoice_lines": _digest(invoice_lines),
        "credits": _digest(credits),
        "metered": _digest(metered),
        "phases": _digest((p.account_id, p.plan, p.starts_at, p.ends_at) for p in phases),
    }
    return inputs


def _priced_plan(
    version: PlanVersion, account: Account, overrides: list[PriceOverride], at: dt.datetime
) -> pricing.Plan:
    """The version's prices for this account: a negotiated override (the account's, else its segment's)."""
    charges = {c.meter.key: engine_charge(c) for c in version.charges.all()}
    for scope in ("segment", "account"):  # account last, so it beats the segment
        for override in overrides:
            mine = (
                (override.account_id == account.pk)
                if scope == "account"
                else (not override.account_id and override.segment and override.segment == account.segment)
            )
            in_force = override.effective_from <= at and (
                override.effective_to is None or override.effective_to > at
            )
            if mine and in_force and override.plan_id in (None, version.plan_id):
                charges[override.meter.key] = engine_charge(override.charge)
    return pricing.Plan(
        key=f"{version.plan.key}@v{version.number}",
        name=version.plan.name,
        currency=version.plan.currency,
        base_fee=pricing.trimmed(version.base_fee),
        charges=tuple(
            pricing.PlanCharge(meter=key, charge=charge) for key, charge in sorted(charges.items())
        ),
    )


def aggregate_usage(
    periods: dict[str, core.AccountPeriod], inputs: PeriodInputs
) -> tuple[dict[tuple[str, str], core.MeterUsage], str]:
    """One GROUP BY over the period's events: per account, meter and phase slot, all and on time.

    The account periods (their bounds and cut-offs) and phase slots travel into the query as
    VALUES lists, so the database does the whole split; Python only reshapes the result.
    """
    if not periods:
        return {}, _digest(())
    if connection.vendor != "postgresql":
        return _aggregate_in_python(periods, inputs)
    account_pk = {key: inputs.accounts[key].pk for key in periods}
    meter_key = {m.pk: key for key, m in inputs.meters.items()}
    period_rows, slot_rows = [], []
    for key, period in periods.items():
        period_rows.append((account_pk[key], period.start, period.end, period.cut_off, len(period.phases)))
        for index, phase in enumerate(period.phases):
            slot_rows.append(
                (account_pk[key], index, phase.starts_at, phase.ends_at or period.end + dt.timedelta(days=1))
            )
    start = min(p.start for p in periods.values())
    end = max(p.end for p in periods.values())
    sql, params = _usage_sql(period_rows, slot_rows, start, end)
    usage: dict[tuple[str, str], core.MeterUsage] = {}
    digest = hashlib.sha256()
    by_pk = {inputs.accounts[key].pk: key for key in periods}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for account_id, meter_id, slot, total, on_time, events, late in cursor.fetchall():
            line_key = (by_pk[account_id], meter_key[meter_id])
            slots = len(periods[line_key[0]].phases) + 1
            used = usage.setdefault(line_key, core.MeterUsage.empty(line_key[0], line_key[1], slots))
            used.quantity[slot] = pricing.trimmed(Decimal(total))
            used.on_time_quantity[slot] = pricing.trimmed(Decimal(on_time or 0))
            used.events += events
            used.late_events += late
            digest.update(repr((line_key, slot, total, on_time, events)).encode())
        late_sql, late_params = _late_ids_sql(period_rows, start, end)
        cursor.execute(late_sql, late_params)
        for account_id, meter_id, event_id in cursor.fetchall():
            late_usage = usage.get((by_pk[account_id], meter_key[meter_id]))
            if late_usage is not None:
                late_usage.late_event_ids.append(event_id)
    return usage, digest.hexdigest()


def _aggregate_in_python(
    periods: dict[str, core.AccountPeriod], inputs: PeriodInputs
) -> tuple[dict[tuple[str, str], core.MeterUsage], str]:
    """The embedded database (SQLite) sums in binary floating point, so its events are summed here instead.

    The events stream from one query and fold into exact Decimal totals, through the very
    accumulator the bundle reconciliation uses; PostgreSQL does the same work in SQL.
    """
    from apps.usage.models import UsageEvent

    by_pk = {inputs.accounts[key].pk: key for key in periods}
    meter_key = {m.pk: key for key, m in inputs.meters.items()}
    start = min(p.start for p in periods.values())
    end = max(p.end for p in periods.values())
    accumulator = core.UsageAccumulator(periods)
    rows = (
        UsageEvent.objects.filter(account_id__in=by_pk, occurred_at__gte=start, occurred_at__lt=end)
        .order_by("received_at", "event_id")
        .values_list("event_id", "account_id", "meter_id", "quantity", "occurred_at", "received_at")
    )
    digest = hashlib.sha256()
    for event_id, account_id, meter_id, quantity, occurred_at, received_at in rows.iterator(chunk_size=5000):
        accumulator.add(
            core.UsageEvent(
                event_id,
                by_pk[account_id],
                meter_key[meter_id],
                pricing.trimmed(quantity),
                occurred_at,
                received_at,
            )
        )
        digest.update(f"{event_id}|{quantity}".encode())
    return accumulator.usage, digest.hexdigest()


def _param(value: object) -> Any:
    """Datetimes as the backend stores them (SQLite keeps UTC text, PostgreSQL takes them as they are)."""
    return connection.ops.adapt_datetimefield_value(value) if isinstance(value, dt.datetime) else value


def _values(rows: list[tuple[Any, ...]], casts: Sequence[str]) -> tuple[str, list[Any]]:
    vendor = connection.vendor
    cells = ", ".join(f"CAST(%s AS {cast})" if vendor == "postgresql" else "%s" for cast in casts)
    return ", ".join(f"({cells})" for _ in rows), [_param(value) for row in rows for value in row]


def _usage_sql(
    period_rows: list[tuple[Any, ...]],
    slot_rows: list[tuple[Any, ...]],
    start: dt.datetime,
    end: dt.datetime,
) -> tuple[str, list[Any]]:
    periods_values, period_params = _values(
        period_rows, ["bigint", "timestamptz", "timestamptz", "timestamptz", "integer"]
    )
    slots_cte = ""
    slot_params: list[Any] = []
    slot_join = "NULL"
    if slot_rows:
        slots_values, slot_params = _values(slot_rows, ["bigint", "integer", "timestamptz", "timestamptz"])
        slots_cte = f", slots(account_id, slot, s_start, s_end) AS (VALUES {slots_values})"
        slot_join = (
            "(SELECT s.slot FROM slots s WHERE s.account_id = e.account_id"
            " AND e.occurred_at >= s.s_start AND e.occurred_at < s.s_end LIMIT 1)"
        )
    sql = f"""
        WITH periods(account_id, p_start, p_end, cut_off, n_slots) AS (VALUES {periods_values}){slots_cte}
        SELECT e.account_id, e.meter_id, COALESCE({slot_join}, p.n_slots) AS slot,
               SUM(e.quantity),
               SUM(CASE WHEN e.received_at <= p.cut_off THEN e.quantity ELSE 0 END),
               COUNT(*),
               SUM(CASE WHEN e.received_at > p.cut_off THEN 1 ELSE 0 END)
        FROM usage_usageevent e
        JOIN periods p ON p.account_id = e.account_id
             AND e.occurred_at >= p.p_start AND e.occurred_at < p.p_end
        WHERE e.tenant_id = %s AND e.occurred_at >= %s AND e.occurred_at < %s
        GROUP BY 1, 2, 3
    """  # noqa: S608 - only placeholders and fixed SQL are interpolated
    from apps.tenancy.context import current_tenant_id

    return sql, [*period_params, *slot_params, current_tenant_id(), _param(start), _param(end)]


def _late_ids_sql(
    period_rows: list[tuple[Any, ...]], start: dt.datetime, end: dt.datetime
) -> tuple[str, list[Any]]:
    periods_values, period_params = _values(
        period_rows, ["bigint", "timestamptz", "timestamptz", "timestamptz", "integer"]
    )
    sql = f"""
        WITH periods(account_id, p_start, p_end, cut_off, n_slots) AS (VALUES {periods_values}),
        late AS (
            SELECT e.account_id, e.meter_id, e.event_id,
                   ROW_NUMBER() OVER (PARTITION BY e.account_id, e.meter_id
                                      ORDER BY e.received_at, e.event_id) AS n
            FROM usage_usageevent e
            JOIN periods p ON p.account_id = e.account_id
             AND e.occurred_at >= p.p_start AND e.occurred_at < p.p_end
            WHERE e.tenant_id = %s AND e.occurred_at >= %s AND e.occurred_at < %s
              AND e.received_at > p.cut_off
        )
        SELECT account_id, meter_id, event_id FROM late WHERE n <= {LATE_IDS_PER_LINE} ORDER BY 1, 2, n
    """  # noqa: S608 - only placeholders and fixed SQL are interpolated
    from apps.tenancy.context import current_tenant_id

    return sql, [*period_params, current_tenant_id(), _param(start), _param(end)]
