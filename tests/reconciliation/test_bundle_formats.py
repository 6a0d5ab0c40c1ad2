"""--format csv and --format table: the same lines, for spreadsheets and for people."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from apps.reconciliation.report import LINE_FIELDS

BUNDLE = Path(__file__).resolve().parents[1] / "data" / "bundle-2026-10"


def reconcile(output_format: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "reconcile_bundle",
        str(BUNDLE),
        "--period",
        "2026-10",
        "--format",
        output_format,
        stdout=out,
        stderr=err,
    )
    return out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def as_json() -> dict[str, Any]:
    return json.loads(reconcile("json")[0])


def test_csv_has_a_header_and_one_row_per_line_with_the_json_values(as_json: dict[str, Any]) -> None:
    text, notice = reconcile("csv")
    rows = list(csv.DictReader(io.StringIO(text)))

    assert text.splitlines()[0] == ",".join(("period", *LINE_FIELDS))
    assert len(rows) == len(as_json["lines"])
    for row, line in zip(rows, as_json["lines"], strict=True):
        assert row["period"] == "2026-10"
        assert {name: row[name] for name in LINE_FIELDS} == {
            name: "" if line[name] is None else line[name] for name in LINE_FIELDS
        }
    leak = next(row for row in rows if (row["account_id"], row["meter"]) == ("acct_00015", "storage_gb"))
    assert (leak["invoiced_amount"], leak["classification"], leak["source"]) == (
        "0.00",
        "under_bill",
        "billing",
    )
    assert "4 unreadable rows" in notice  # on stderr, so the CSV stays clean


def test_table_aligns_every_line_and_ends_with_totals_and_skipped_rows(as_json: dict[str, Any]) -> None:
    text, _ = reconcile("table")
    lines = text.splitlines()

    assert lines[0] == "Reconciliation of 2026-10: 72 lines, 18 not matched, 4 unreadable rows skipped"
    header = next(line for line in lines if line.startswith("Account"))
    for heading in (
        "Meter",
        "Raw",
        "On time",
        "Metered",
        "Expected",
        "Credited",
        "Billed",
        "Difference",
        "Class",
    ):
        assert heading in header
    body = [line for line in lines if line.startswith("acct_")]
    assert len(body) == len(as_json["lines"])
    # Aligned: the class column starts at the same place on every row.
    assert len({line.index(" matched") for line in body if " matched" in line}) == 1
    over = next(line for line in body if line.startswith("acct_00005  storage_gb"))
    assert over.split()[-2:] == ["over-bill", "billing"] and "-1,493" in over
    base = next(line for line in body if line.startswith("acct_00006  base fee"))
    assert "292.55" in base and "-206.45" in base and base.endswith("proration")

    assert "USD: 66 lines, 17 not matched" in lines and "JPY: 6 lines, 1 not matched" in lines
    assert any(line.split() == ["proration", "6", "-441.02"] for line in lines)
    under_billed = format(Decimal(as_json["currency_totals"]["USD"]["under_billed"]), ",f")
    assert any(f"(under-billed {under_billed}," in line for line in lines)
    skipped = [f"  {e['file']} line {e['line']}: {e['error']}" for e in as_json["import_errors"]]
    assert lines[-len(skipped) :] == skipped
