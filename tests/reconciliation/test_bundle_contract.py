"""The contract: the example bundle reconciles to `tests/data/bundle-2026-10.expected.json`.

No test here touches the database: pytest-django would refuse it, which also proves that
the command runs where the database is not migrated.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from apps.reconciliation.report import LINE_FIELDS

DATA = Path(__file__).resolve().parents[1] / "data"
BUNDLE = DATA / "bundle-2026-10"
EXPECTED: dict[str, Any] = json.loads((DATA / "bundle-2026-10.expected.json").read_text())


def reconcile(path: Path | str, *options: str) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "reconcile_bundle",
        str(path),
        "--period",
        "2026-10",
        "--format",
        "json",
        *options,
        stdout=out,
        stderr=err,
    )
    return json.loads(out.getvalue())  # stdout holds nothing but the JSON document


def shown_fields(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each line cut down to the fields the expected file shows for the line in its position."""
    assert len(lines) == len(EXPECTED["lines"])
    return [
        {name: line[name] for name in expected}
        for line, expected in zip(lines, EXPECTED["lines"], strict=True)
    ]


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return reconcile(BUNDLE)


def test_every_line_matches_the_expected_file_field_for_field_in_the_same_order(
    result: dict[str, Any],
) -> None:
    assert result["period"] == EXPECTED["period"]
    assert shown_fields(result["lines"]) == EXPECTED["lines"]


def test_the_unreadable_rows_are_reported_with_their_line_and_reason(result: dict[str, Any]) -> None:
    errors = result["import_errors"]
    assert len(errors) == EXPECTED["import_errors"]
    physical = (BUNDLE / "events.csv").read_text().splitlines()
    header = physical[0].split(",")
    for error in errors:
        assert error["file"] == "events.csv"
        row = physical[error["line"] - 1]
        field, _, reason = error["error"].partition(": ")
        assert field in header, error  # the reason names the column at fault...
        quoted = re.search(r"'([^']*)'", reason)
        assert quoted is not None and quoted.group(1) in row.split(","), (error, row)  # ...and its value


def test_every_line_carries_all_fields_with_decimals_as_strings(result: dict[str, Any]) -> None:
    for line in result["lines"]:
        assert tuple(line) == LINE_FIELDS
        assert Decimal(line["billed_amount"]) == Decimal(line["invoiced_amount"]) - Decimal(
            line["credited_amount"]
        )
        assert Decimal(line["difference"]) == Decimal(line["expected_amount"]) - Decimal(
            line["billed_amount"]
        )
        units = ("raw_units", "on_time_units", "metered_units")
        if line["meter"] is None:
            assert [line[name] for name in units] == [None, None, None]
        else:
            assert all(isinstance(line[name], str) for name in (*units, "invoiced_units"))


def test_units_explain_the_source_and_the_timing(result: dict[str, Any]) -> None:
    lines = result["lines"]
    for line in lines:
        if line["classification"] in ("under_bill", "over_bill") and line["meter"] is not None:
            blamed_metering = Decimal(line["metered_units"]) != Decimal(line["on_time_units"])
            assert line["source"] == ("metering" if blamed_metering else "billing"), line
        if line["classification"] == "timing":
            assert Decimal(line["raw_units"]) > Decimal(line["on_time_units"]), line
            assert line["invoiced_units"] == line["on_time_units"], line
    assert any(line["source"] == "metering" for line in lines)
    assert any(line["source"] == "billing" for line in lines)


def test_currency_totals_add_up_the_lines_of_each_currency(result: dict[str, Any]) -> None:
    assert set(result["currency_totals"]) == {"JPY", "USD"}
    for currency, totals in result["currency_totals"].items():
        mine = [line for line in result["lines"] if line["currency"] == currency]
        differences = [Decimal(line["difference"]) for line in mine]
        assert totals["lines"] == len(mine)
        assert Decimal(totals["difference"]) == sum(differences)
        assert Decimal(totals["under_billed"]) == sum(d for d in differences if d > 0)
        assert Decimal(totals["over_billed"]) == -sum(d for d in differences if d < 0)
        by_class = totals["by_classification"]
        assert sum(entry["lines"] for entry in by_class.values()) == len(mine)
        assert totals["discrepancies"] == len(mine) - by_class["matched"]["lines"]
    assert result["currency_totals"]["JPY"]["over_billed"] == "1493"


@pytest.mark.parametrize("nested", [True, False], ids=["zipped-folder", "flat-zip"])
def test_the_same_bundle_zipped_reconciles_the_same(
    tmp_path: Path, result: dict[str, Any], nested: bool
) -> None:
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for file in sorted(BUNDLE.iterdir()):
            zipped.write(file, f"bundle-2026-10/{file.name}" if nested else file.name)

    assert reconcile(archive) == result


def test_working_shows_the_pricing_the_late_events_and_the_credits() -> None:
    lines = {(line["account_id"], line["meter"]): line for line in reconcile(BUNDLE, "--working")["lines"]}

    timing = lines[("acct_00017", "api_calls")]["working"]
    assert timing["events"]["late_count"] == len(timing["events"]["late_event_ids"]) > 0
    assert timing["on_time"]["usage_total"] == lines[("acct_00017", "api_calls")]["invoiced_amount"]
    assert timing["expected"]["phases"][0]["charge"]["model"] == "graduated"
    credited = lines[("acct_00018", "storage_gb")]["working"]
    assert [credit["credit_note_id"] for credit in credited["credits"]] == ["cn_acct_00018_storage_gb"]
    prorated = lines[("acct_00006", None)]["working"]
    assert [phase["label"] for phase in prorated["expected"]["phases"]] == ["growth", "scale"]
