"""A large bundle streams: memory follows the distinct event ids, never the events themselves."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
BUNDLE = DATA / "bundle-2026-10"
REPO = Path(__file__).resolve().parents[2]
ROWS = 300_000

# Runs in a fresh interpreter so that the peak RSS it reports is this reconciliation's
# alone, not whatever the test session peaked at before.
MEASURE = """
import json, resource, sys
from datetime import UTC, datetime
from apps.reconciliation.bundle import read_bundle
from apps.reconciliation.core import Month

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = read_bundle(sys.argv[1], month=Month.parse("2026-10"), run_time=datetime(2026, 11, 20, tzinfo=UTC))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
lines = {f"{line.account_id}/{line.meter}": line.as_dict() for line in result.reconciliation.lines}
print(json.dumps({"growth_kib": after - before, "stats": result.stats, "errors": result.import_error_count,
                  "lines": lines, "django": "django" in sys.modules}))
"""


def write_events(path: Path) -> None:
    """ROWS events over the example's 24 accounts: every 1,000th repeated, every 500th late, one bad row."""
    with path.open("w") as stream:
        stream.write("event_id,account_id,meter,quantity,occurred_at,received_at\n")
        for i in range(ROWS):
            event_id = f"evt_{i - 1 if i % 1000 == 999 else i:09d}"  # the row before it, again
            received = "2026-11-02T00:00:00Z" if i % 500 == 0 else "2026-10-28T23:59:59Z"
            stream.write(
                f"{event_id},acct_{i % 24:05d},{'api_calls' if i % 2 else 'storage_gb'},"
                f"{1 + i % 7}.5,2026-10-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{i % 59:02d}Z,{received}\n"
            )
        stream.write("evt_bad,acct_00000,api_calls,lots,2026-10-03T10:00:00Z,2026-10-03T10:00:05Z\n")


def test_three_hundred_thousand_events_reconcile_in_bounded_memory(tmp_path: Path) -> None:
    bundle = tmp_path / "big"
    shutil.copytree(BUNDLE, bundle)
    events = bundle / "events.csv"
    write_events(events)
    size_kib = events.stat().st_size // 1024

    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(bundle)], cwd=REPO, capture_output=True, text=True, check=False
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    duplicates = ROWS // 1000
    assert report["stats"]["events_duplicate"] == duplicates
    assert report["stats"]["events_counted"] == ROWS - duplicates
    assert report["errors"] == 1
    assert report["django"] is False  # the core and the bundle reader are plain Python
    # acct_00000 gets rows 0, 24, 48, ...: even rows, so storage; every 500th of all rows is late.
    storage = report["lines"]["acct_00000/storage_gb"]
    assert storage["classification"] == "under_bill"
    assert storage["raw_units"] != storage["on_time_units"]
    # Keeping every event as an object would cost several times the file; the seen-id set
    # (the one thing that must grow with the events) stays well under twice its size.
    assert report["growth_kib"] < 2 * size_kib, (report["growth_kib"], size_kib)
    assert elapsed < 20
