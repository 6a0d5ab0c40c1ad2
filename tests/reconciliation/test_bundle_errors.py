"""Bad bundles: fatal problems stop with a clear message; unreadable rows are skipped and reported."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from .test_bundle_contract import shown_fields

DATA = Path(__file__).resolve().parents[1] / "data"
BUNDLE = DATA / "bundle-2026-10"
EXPECTED: dict[str, Any] = json.loads((DATA / "bundle-2026-10.expected.json").read_text())
REPO = Path(__file__).resolve().parents[2]


def reconcile(path: Path | str, *options: str, period: str = "2026-10") -> dict[str, Any]:
    out = io.StringIO()
    call_command(
        "reconcile_bundle", str(path), "--period", period, *options, stdout=out, stderr=io.StringIO()
    )
    return json.loads(out.getvalue())


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(BUNDLE, copy)
    return copy


def append(path: Path, *rows: str) -> int:
    """Append rows to a CSV and return the physical line number of the first one."""
    first = len(path.read_text().splitlines()) + 1
    with path.open("a") as stream:
        stream.writelines(f"{row}\n" for row in rows)
    return first


def test_a_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"nowhere: no such file or folder"):
        reconcile(tmp_path / "nowhere")


def test_a_file_that_is_not_a_zip_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bundle.zip").write_text("not a zip")
    with pytest.raises(CommandError, match=r"not a folder or a \.zip file"):
        reconcile(tmp_path / "bundle.zip")


@pytest.mark.parametrize("period", ["2026-13", "10-2026", "2026/10", "october"])
def test_a_bad_period_is_refused(period: str) -> None:
    with pytest.raises(CommandError, match=r"--period: .*YYYY-MM"):
        reconcile(BUNDLE, period=period)


def test_an_invalid_pricing_field_is_named_with_its_file(bundle: Path) -> None:
    pricing = json.loads((bundle / "pricing.json").read_text())
    pricing["plans"][0]["base_fee"] = "ninety-nine"
    pricing["meters"][1]["rounding"] = "sideways"
    (bundle / "pricing.json").write_text(json.dumps(pricing))

    with pytest.raises(CommandError) as raised:
        reconcile(bundle)
    message = str(raised.value)
    assert "pricing.json: plans[0].base_fee: must be a decimal string" in message
    assert "pricing.json: meters[1].rounding: must be one of up, down, none" in message


def test_pricing_that_is_not_json_is_named(bundle: Path) -> None:
    (bundle / "pricing.json").write_text('{"meters": [')
    with pytest.raises(CommandError, match=r"pricing\.json: not valid JSON: .* line 1 column"):
        reconcile(bundle)


def test_a_missing_file_is_named(bundle: Path) -> None:
    (bundle / "events.csv").unlink()
    with pytest.raises(CommandError, match=r"events\.csv: file is missing"):
        reconcile(bundle)


def test_a_header_without_a_required_column_is_named(bundle: Path) -> None:
    events = bundle / "events.csv"
    events.write_text(events.read_text().replace(",received_at\n", ",arrived_at\n", 1))
    with pytest.raises(CommandError, match=r"events\.csv: the header lacks column received_at"):
        reconcile(bundle)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--as-of", "2026-11-20T00:00:00", "needs a UTC offset"),
        ("--as-of", "soon", "not an ISO-8601 timestamp"),
        ("--materiality-absolute", "ten", "not a number"),
        ("--materiality-relative", "-0.1", "must be a number >= 0"),
    ],
)
def test_bad_options_are_refused(option: str, value: str, message: str) -> None:
    with pytest.raises(CommandError, match=f"{option}: .*{message}"):
        reconcile(BUNDLE, option, value)


def test_materiality_thresholds_from_the_command_line_apply() -> None:
    lines = {
        (line["account_id"], line["meter"]): line
        for line in reconcile(BUNDLE, "--materiality-absolute", "30")["lines"]
    }

    assert lines[("acct_00003", "api_calls")]["classification"] == "within_tolerance"  # 25.00 < 30
    assert lines[("acct_00015", "storage_gb")]["classification"] == "under_bill"  # 102.16
    assert lines[("acct_00000", "api_calls")]["classification"] == "matched"


def test_unreadable_rows_in_every_file_are_reported_and_the_rest_reconciled(bundle: Path) -> None:
    bad_zone = append(bundle / "accounts.csv", "acct_mars,Mars Base,smb,Mars/Olympus")
    bad_plan = append(bundle / "subscriptions.csv", "acct_00001,platinum,2026-10-01T00:00:00+00:00,")
    invoice = (
        "in_x,acct_00001,2026-10-01T00:00:00+00:00,2026-11-01T00:00:00+00:00,"
        "finalized,2026-11-01T02:00:00+00:00,USD"
    )
    bad_amount, naive, second = (
        append(bundle / "invoices.csv", f"in_00001,{invoice.split(',', 1)[1]},api_calls,7,fifty-eight"),
        append(bundle / "invoices.csv", invoice.replace("02:00:00+00:00", "02:00:00") + ",storage_gb,1,1.00"),
        append(bundle / "invoices.csv", f"{invoice},storage_gb,1,1.00"),
    )
    no_invoice = append(
        bundle / "credits.csv", "cn_x,in_nope,acct_00001,api_calls,1.00,oops,2026-11-04T02:00:00+00:00"
    )
    short_row = append(bundle / "events.csv", "evt_short,acct_00001,api_calls,5")
    mars_event = append(
        bundle / "events.csv", "evt_mars,acct_mars,api_calls,5,2026-10-03T10:00:00Z,2026-10-03T10:00:05Z"
    )

    result = reconcile(bundle)

    errors = {(error["file"], error["line"]): error["error"] for error in result["import_errors"]}
    assert "timezone: unknown time zone 'Mars/Olympus'" in errors[("accounts.csv", bad_zone)]
    assert "plan: unknown plan 'platinum'" in errors[("subscriptions.csv", bad_plan)]
    assert errors[("invoices.csv", bad_amount)] == "amount: 'fifty-eight' is not a number"
    assert "finalized_at: '2026-11-01T02:00:00' has no UTC offset" in errors[("invoices.csv", naive)]
    assert "already has invoice in_00001 for 2026-10" in errors[("invoices.csv", second)]
    assert "invoice_id: unknown invoice 'in_nope'" in errors[("credits.csv", no_invoice)]
    assert errors[("events.csv", short_row)] == "has 4 fields, the header has 6"
    assert "unknown account 'acct_mars'" in errors[("events.csv", mars_event)]
    assert len(errors) == EXPECTED["import_errors"] + 8
    # Everything else is reconciled exactly as before.
    assert shown_fields(result["lines"]) == EXPECTED["lines"]


def test_a_row_spanning_two_lines_is_reported_at_the_line_it_starts_on(bundle: Path) -> None:
    start = append(
        bundle / "events.csv", 'evt_q,acct_00001,api_calls,"5\n0",2026-10-03T10:00:00Z,2026-10-03T10:00:05Z'
    )
    after = append(
        bundle / "events.csv", "evt_r,acct_00001,api_calls,x,2026-10-03T10:00:00Z,2026-10-03T10:00:05Z"
    )

    errors = reconcile(bundle)["import_errors"]

    assert [(e["line"], e["error"]) for e in errors[-2:]] == [
        (start, "quantity: '5\\n0' is not a number"),
        (after, "quantity: 'x' is not a number"),
    ]


def run_manage(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": os.environ.get("DATABASE_URL", "sqlite:////tmp/recon-bundle.sqlite3"),
    }
    return subprocess.run(
        [sys.executable, "manage.py", "reconcile_bundle", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )


def test_the_command_exits_non_zero_with_the_reason_on_stderr(tmp_path: Path) -> None:
    failed = run_manage(str(tmp_path / "missing"), "--period", "2026-10")

    assert failed.returncode != 0
    assert "no such file or folder" in failed.stderr and failed.stdout == ""


def test_stdout_holds_only_the_json_and_notices_go_to_stderr() -> None:
    done = run_manage(str(BUNDLE), "--period", "2026-10", "--format", "json")

    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["lines"]) == len(EXPECTED["lines"])
    assert "4 unreadable rows" in done.stderr
