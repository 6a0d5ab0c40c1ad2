"""A 100 MB CSV file imports in bounded memory: the import process's peak RSS does not grow with the file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

from apps.tenancy.context import tenant_context
from apps.usage.models import UsageEvent
from tests.usage.conftest import make_catalog

# Another process imports into the test database, so the data must be committed (and on
# SQLite the test database lives in this process's memory): PostgreSQL only.
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024

RUN = """
import sys, django
django.setup()
from django.core.management import call_command
call_command("import_events", sys.argv[1], "--tenant", sys.argv[2], "--quiet")
status = open("/proc/self/status").read()
print("VmHWM", [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")][0])
"""


def write_csv(path: Path, size: int, prefix: str) -> int:
    rows = 0
    with path.open("w") as out:
        out.write("event_id,account_id,meter,quantity,occurred_at\n")
        while out.tell() < size:
            out.write(
                "".join(
                    f"{prefix}-{rows + n:09d},{('acme', 'globex', 'initech')[n % 3]},"
                    f"{('api_calls', 'storage_gb')[n % 2]},{n % 997}.25,2026-10-{n % 28 + 1:02d}T08:30:00Z\n"
                    for n in range(10_000)
                )
            )
            rows += 10_000
    return rows


def import_peak_rss(path: Path, slug: str) -> tuple[int, str]:
    """Run the import in a fresh process; its peak RSS in bytes (VmHWM) and its output."""
    settings = connection.settings_dict
    url = (
        f"postgres://{quote(settings['USER'] or '')}:{quote(settings['PASSWORD'] or '')}"
        f"@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/{settings['NAME']}"
    )
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "TRUEUP_ENV": "test",
        "DJANGO_SETTINGS_MODULE": "apps.config.settings",
    }
    result = subprocess.run(
        [sys.executable, "-c", RUN, str(path), slug],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    kib = int(result.stdout.rsplit("VmHWM", 1)[1].strip().strip("[]'\""))
    return kib * 1024, result.stdout


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak RSS from /proc (Linux)")
def test_a_100_mb_csv_imports_in_bounded_memory(tenant_a, tmp_path):
    make_catalog(tenant_a)
    small, big = tmp_path / "small.csv", tmp_path / "big.csv"
    small_rows = write_csv(small, 1 * MiB, "s")
    big_rows = write_csv(big, 100 * MiB, "b")
    assert big.stat().st_size >= 100 * MiB
    small_peak, _ = import_peak_rss(small, tenant_a.slug)
    big_peak, output = import_peak_rss(big, tenant_a.slug)
    print(
        f"peak RSS of the import: {small_peak / MiB:.0f} MiB for 1 MiB, {big_peak / MiB:.0f} MiB for 100 MiB"
    )
    assert f"Done: {big_rows:,} rows" in output and f"accepted {big_rows:,}," in output
    # The file is 100 times larger; the process is not: a few chunks' worth at most.
    assert big_peak - small_peak < 40 * MiB, (small_peak // MiB, big_peak // MiB)
    with tenant_context(tenant_a):
        assert UsageEvent.objects.count() == small_rows + big_rows
