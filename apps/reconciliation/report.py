"""Rendering a reconciled bundle: JSON for machines, CSV for spreadsheets, a table for people."""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import IO, Final

from apps.reconciliation.bundle import BundleResult
from apps.reconciliation.core import CLASSIFICATIONS, CurrencyTotals, ReconciledLine, money_str, units_str

FORMATS: Final = ("json", "csv", "table")

LINE_FIELDS: Final = (
    "account_id",
    "meter",
    "currency",
    "raw_units",
    "on_time_units",
    "metered_units",
    "invoiced_units",
    "expected_amount",
    "invoiced_amount",
    "credited_amount",
    "billed_amount",
    "difference",
    "classification",
    "direction",
    "source",
)

TABLE_ERRORS_SHOWN: Final = 50


def write_json(result: BundleResult, out: IO[str], *, working: bool = False) -> None:
    json.dump(result.as_dict(working=working), out, indent=2, ensure_ascii=False)
    out.write("\n")


def write_csv(result: BundleResult, out: IO[str]) -> None:
    """One row per reconciled line, the JSON line's fields as columns (empty = null)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("period", *LINE_FIELDS))
    period = str(result.month)
    for line in result.reconciliation.lines:
        data = line.as_dict()
        writer.writerow((period, *("" if data[name] is None else data[name] for name in LINE_FIELDS)))


def _amount(value: Decimal, currency: str) -> str:
    # Thousands separators for people; the places stay the currency's.
    return format(Decimal(money_str(value, currency)), ",f")


def _units(value: Decimal | None) -> str:
    if value is None:
        return "-"
    whole, dot, fraction = units_str(value).partition(".")
    return f"{int(whole):,}{dot}{fraction}"


_COLUMNS: Final = (
    # (group, heading, alignment)
    ("", "Account", "<"),
    ("", "Meter", "<"),
    ("", "Cur", "<"),
    ("Billing units", "Raw", ">"),
    ("Billing units", "On time", ">"),
    ("Billing units", "Metered", ">"),
    ("Billing units", "Invoiced", ">"),
    ("Amounts", "Expected", ">"),
    ("Amounts", "Invoiced", ">"),
    ("Amounts", "Credited", ">"),
    ("Amounts", "Billed", ">"),
    ("Amounts", "Difference", ">"),
    ("", "Class", "<"),
    ("", "Source", "<"),
)


def _cells(line: ReconciledLine) -> tuple[str, ...]:
    money = line.currency
    return (
        line.account_id,
        line.meter or "base fee",
        money,
        _units(line.raw_units),
        _units(line.on_time_units),
        _units(line.metered_units),
        _units(line.invoiced_units),
        _amount(line.expected_amount, money),
        _amount(line.invoiced_amount, money),
        _amount(line.credited_amount, money),
        _amount(line.billed_amount, money),
        _amount(line.difference, money),
        line.classification.replace("_", "-"),
        line.source or "",
    )


def _widths(rows: Sequence[Sequence[str]]) -> list[int]:
    return [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]


def _aligned(rows: Sequence[Sequence[str]], aligns: Sequence[str]) -> list[str]:
    widths = _widths(rows)
    return [
        "  ".join(
            f"{cell:{align}{width}}" for cell, align, width in zip(row, aligns, widths, strict=True)
        ).rstrip()
        for row in rows
    ]


def _group_header(widths: Sequence[int]) -> str:
    """A line naming each group of columns, centred over them with dashes."""
    parts: list[str] = []
    index = 0
    for group, columns in itertools.groupby(_COLUMNS, key=lambda column: column[0]):
        count = len(list(columns))
        span = sum(widths[index : index + count]) + 2 * (count - 1)
        parts.append(f" {group} ".center(span, "-") if group else " " * span)
        index += count
    return "  ".join(parts).rstrip()


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _summary(totals: CurrencyTotals) -> list[str]:
    money = totals.currency
    lines = [
        f"{money}: {_count(totals.lines, 'line')}, {totals.discrepancies} not matched",
        f"  expected {_amount(totals.expected, money)}  invoiced {_amount(totals.invoiced, money)}"
        f"  credited {_amount(totals.credited, money)}  billed {_amount(totals.billed, money)}",
        f"  net difference {_amount(totals.difference, money)}  (under-billed "
        f"{_amount(totals.under_billed, money)}, over-billed {_amount(totals.over_billed, money)})",
    ]
    rows: list[tuple[str, ...]] = [("  Class", "Lines", "Difference")]
    for name in CLASSIFICATIONS:
        count, amount = totals.by_classification[name]
        if count:
            rows.append((f"  {name.replace('_', '-')}", str(count), _amount(amount, money)))
    return [*lines, *_aligned(rows, ("<", ">", ">"))]


def write_table(result: BundleResult, out: IO[str]) -> None:
    """An aligned table of every line, then totals per currency and class, then what was skipped."""
    reconciliation = result.reconciliation
    lines = reconciliation.lines
    not_matched = sum(line.classification != "matched" for line in lines)
    out.write(
        f"Reconciliation of {result.month}: {_count(len(lines), 'line')}, {not_matched} not matched, "
        f"{_count(result.import_error_count, 'unreadable row')} skipped\n"
        "Billed = Invoiced - Credited; Difference = Expected - Billed "
        "(positive: under-billed, negative: over-billed)\n\n"
    )
    header = tuple(name for _group, name, _align in _COLUMNS)
    aligns = tuple(align for _group, _name, align in _COLUMNS)
    rows = [header, *(_cells(line) for line in lines)]
    table = _aligned(rows, aligns)
    rule = "=" * max(len(row) for row in table)
    out.write("\n".join([_group_header(_widths(rows)), table[0], rule, *table[1:]]) + "\n")
    out.write("\nTotals by currency (amounts are never added across currencies)\n")
    for totals in reconciliation.totals().values():
        out.write("\n".join(_summary(totals)) + "\n")
    if result.import_errors:
        out.write(f"\nUnreadable rows, skipped ({result.import_error_count}):\n")
        for issue in result.import_errors[:TABLE_ERRORS_SHOWN]:
            out.write(f"  {issue.file} line {issue.line}: {issue.error}\n")
        if len(result.import_errors) > TABLE_ERRORS_SHOWN:
            out.write(f"  ... {result.import_error_count - TABLE_ERRORS_SHOWN} more (see --format json)\n")
    if reconciliation.warnings:
        out.write("\nNot reconciled:\n")
        out.writelines(f"  {warning}\n" for warning in reconciliation.warnings)
