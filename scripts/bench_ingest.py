#!/usr/bin/env python3
"""Benchmark of usage ingestion on PostgreSQL (`make bench-ingest`).

1. Creates its own database (``trueup_bench``, as the non-superuser owner role, the way
   scripts/test_database.py prepares roles), migrates it, and seeds a tenant with an API
   key, accounts and meters.
2. Serves Trueup with gunicorn (2 workers, production settings, as the restricted app role
   when it can log in) and posts EVENTS events in batches of BATCH from a separate process
   over a few concurrent HTTP connections, checking every response.
3. Empties the table and loads the same rows in this process the shortest way there is:
   COPY into a staging table and INSERT ... ON CONFLICT DO NOTHING (the de-duplication),
   with as many connections as gunicorn has workers: the baseline.
4. Prints events/s for both and their ratio (targets: >= 60,000/s over HTTP, >= 0.5 x baseline).
5. Unless --csv-mb 0: imports a CSV file of that size with `manage.py import_events` in a
   child process and prints its rows/s and peak memory (RSS).

Everything it sends goes to 127.0.0.1; the run is bounded by EVENTS and stops by itself.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import queue
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
HOST = "127.0.0.1"
OWNER, DEFAULT_APP_ROLE = "trueup", "trueup_app"
ACCOUNTS, METERS = 1_000, ("api_calls", "storage_gb", "seats")
MONTH = datetime(2026, 10, 1, tzinfo=UTC)


def say(message: str) -> None:
    print(f"[bench-ingest] {message}", flush=True)


# --- the events -------------------------------------------------------------------------


def events(count: int, seed: int) -> list[tuple[str, str, str, str, str]]:
    """Deterministic events (event_id, account key, meter, quantity, occurred_at), random event ids."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    step = timedelta(days=30) / count
    return [
        (
            f"{rng.getrandbits(128):032x}",
            f"acct-{rng.randrange(ACCOUNTS):04d}",
            METERS[rng.randrange(len(METERS))],
            f"{rng.randrange(1, 5000)}.{rng.randrange(100):02d}",
            (MONTH + step * n).isoformat(),
        )
        for n in range(count)
    ]


def json_bodies(count: int, batch: int, seed: int) -> list[bytes]:
    rows = events(count, seed)
    bodies = []
    for start in range(0, count, batch):
        bodies.append(
            json.dumps(
                [
                    {
                        "event_id": event_id,
                        "account_id": account,
                        "meter": meter,
                        "quantity": quantity,
                        "occurred_at": occurred_at,
                        "properties": {"region": "eu-west-1", "plan": "pro"},
                    }
                    for event_id, account, meter, quantity, occurred_at in rows[start : start + batch]
                ],
                separators=(",", ":"),
            ).encode()
        )
    return bodies


# --- the client (a separate process) ----------------------------------------------------


def client_main(args: argparse.Namespace) -> None:
    """Post the batches over `connections` concurrent connections; print a JSON report."""
    bodies = json_bodies(args.events, args.batch, args.seed)
    work: queue.Queue[bytes] = queue.Queue()
    for body in bodies:
        work.put(body)
    results: list[tuple[int, float, dict]] = []
    lock = threading.Lock()

    def worker() -> None:
        conn = None
        while True:
            try:
                body = work.get_nowait()
            except queue.Empty:
                return
            started = time.perf_counter()
            for attempt in range(3):
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(HOST, args.port, timeout=120)
                    conn.request(
                        "POST",
                        "/api/v1/events",
                        body=body,
                        headers={"Authorization": f"Bearer {args.key}", "Content-Type": "application/json"},
                    )
                    response = conn.getresponse()
                    payload = response.read()
                    if response.getheader("Connection", "").lower() == "close":
                        conn.close()
                        conn = None
                    break
                except (ConnectionError, http.client.HTTPException):
                    if conn is not None:
                        conn.close()
                    conn = None
                    if attempt == 2:
                        raise
            elapsed = time.perf_counter() - started
            data = json.loads(payload) if payload else {}
            with lock:
                results.append((response.status, elapsed, data))

    threads = [threading.Thread(target=worker) for _ in range(args.connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    statuses = sorted({status for status, _, _ in results})
    accepted = sum(data.get("summary", {}).get("accepted", 0) for _, _, data in results)
    latencies = sorted(elapsed for _, elapsed, _ in results)
    print(
        json.dumps(
            {
                "wall": wall,
                "requests": len(results),
                "statuses": statuses,
                "accepted": accepted,
                "p50": latencies[len(latencies) // 2],
                "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
                "client_cpu": time.process_time(),
            }
        )
    )


# --- the database -------------------------------------------------------------------------


def prepare_database(name: str) -> tuple[str, str, str]:
    """Create the database; return (owner URL, app URL, app role name)."""
    import psycopg

    sys.path.insert(0, str(ROOT / "scripts"))
    import test_database  # the same role preparation as `make test`

    if not os.environ.get("BENCH_SKIP_ROLES"):
        test_database.ensure_roles()
    app_role = os.environ.get("DATABASE_APP_ROLE", DEFAULT_APP_ROLE)
    with psycopg.connect(host=HOST, user=OWNER, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" OWNER {OWNER}')
    owner_url = f"postgres://{OWNER}@{HOST}:5432/{name}"
    app_url = owner_url
    try:
        with psycopg.connect(host=HOST, user=app_role, dbname=name, connect_timeout=3):
            app_url = f"postgres://{app_role}@{HOST}:5432/{name}"
    except psycopg.Error:
        say(f"role {app_role} cannot log in here: the app connects as {OWNER} (RLS is forced on it too)")
    return owner_url, app_url, app_role


def server_env(database_url: str, app_role: str) -> dict[str, str]:
    return {
        **os.environ,
        "TRUEUP_ENV": "production",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "ENCRYPTION_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "ALLOWED_HOSTS": HOST,
        "SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": database_url,
        "DATABASE_APP_ROLE": app_role,
        "CELERY_BROKER_URL": "",
        "LOG_LEVEL": "WARNING",
    }


def seed(env: dict[str, str]) -> tuple[str, int, dict[str, int], dict[str, int]]:
    """Tenant, API key, accounts and meters; returns (raw key, tenant id, account ids, meter ids)."""
    code = f"""
import json
from apps.accounts.models import Account
from apps.catalog.models import Meter
from apps.tenancy.context import tenant_context
from apps.tenancy.services import apikey_create, tenant_create
tenant = tenant_create(slug="bench", name="Bench Co")
with tenant_context(tenant):
    key, raw = apikey_create(name="bench", role="admin", actor=None)
    Account.objects.bulk_create(
        [Account(key=f"acct-{{n:04d}}", name=f"Account {{n}}") for n in range({ACCOUNTS})]
    )
    for meter in {list(METERS)!r}:
        Meter.objects.create(key=meter, name=meter)
    accounts = dict(Account.objects.values_list("key", "id"))
    meters = dict(Meter.objects.values_list("key", "id"))
print(json.dumps([raw, tenant.pk, accounts, meters]))
"""
    output = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [PYTHON, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    raw, tenant_id, accounts, meters = json.loads(output.strip().splitlines()[-1])
    return raw, tenant_id, accounts, meters


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of processes, from /proc (Linux); 0 for one that is gone."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def backend_pids(database_url: str, name: str) -> list[int]:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [name]
        ).fetchall()
    return [pid for (pid,) in rows]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_healthy(port: int, server: subprocess.Popen, deadline: float = 60) -> None:
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        if server.poll() is not None:
            raise SystemExit("gunicorn exited before it was ready")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("gunicorn did not become healthy")


def count_events(database_url: str, tenant_id: int) -> int:
    import psycopg

    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT set_config('app.tenant_id', %s, false)", [str(tenant_id)])
        return conn.execute(
            "SELECT count(*) FROM usage_usageevent WHERE tenant_id = %s", [tenant_id]
        ).fetchone()[0]


# --- the baseline ---------------------------------------------------------------------------


def baseline(database_url: str, tenant_id: int, payloads: list[str], connections: int) -> float:
    """COPY each batch into a staging table and INSERT ... ON CONFLICT DO NOTHING; returns seconds."""
    import psycopg

    work: queue.Queue[str] = queue.Queue()
    for payload in payloads:
        work.put(payload)
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            with psycopg.connect(database_url) as conn, conn.cursor() as cursor:
                while True:
                    try:
                        payload = work.get_nowait()
                    except queue.Empty:
                        return
                    with conn.transaction():
                        cursor.execute("SELECT set_config('app.tenant_id', %s, true)", [str(tenant_id)])
                        cursor.execute(
                            'CREATE TEMP TABLE staging (event_id text COLLATE "C", account_id bigint, '
                            "meter_id bigint, quantity numeric, occurred_at timestamptz, properties jsonb) "
                            "ON COMMIT DROP"
                        )
                        with cursor.copy("COPY staging FROM STDIN") as copy:
                            copy.write(payload)
                        cursor.execute(
                            "INSERT INTO usage_usageevent (tenant_id, event_id, account_id, meter_id,"
                            " quantity, occurred_at, received_at, properties, source, batch_id)"
                            " SELECT %s, event_id, account_id, meter_id, quantity, occurred_at, now(),"
                            " properties, 'api', 0 FROM staging ORDER BY event_id"
                            " ON CONFLICT (tenant_id, event_id) DO NOTHING",
                            [tenant_id],
                        )
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise failures[0]
    return elapsed


def copy_payloads(
    count: int, batch: int, seed: int, accounts: dict[str, int], meters: dict[str, int]
) -> list[str]:
    rows = events(count, seed)
    props = '{"region": "eu-west-1", "plan": "pro"}'
    return [
        "".join(
            f"{event_id}\t{accounts[account]}\t{meters[meter]}\t{Decimal(quantity)}\t{occurred_at}\t{props}\n"
            for event_id, account, meter, quantity, occurred_at in rows[start : start + batch]
        )
        for start in range(0, count, batch)
    ]


# --- CSV import memory ----------------------------------------------------------------------


IMPORT_AND_REPORT_RSS = """
import sys, django
django.setup()
from django.core.management import call_command
call_command("import_events", sys.argv[1], "--tenant", sys.argv[2], "--quiet")
status = open("/proc/self/status").read()
print("VmHWM", [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")][0])
"""


def csv_import(env: dict[str, str], megabytes: int, seed: int) -> None:
    path = Path(tempfile.gettempdir()) / f"trueup-bench-{os.getpid()}.csv"
    rng = random.Random(seed + 1)  # noqa: S311 - reproducible test data
    target = megabytes * 1024 * 1024
    rows = 0
    with path.open("w") as out:
        out.write("event_id,account_id,meter,quantity,occurred_at\n")
        written = 0
        while written < target:
            lines = "".join(
                f"csv-{rng.getrandbits(96):024x},acct-{rng.randrange(ACCOUNTS):04d},{METERS[rng.randrange(3)]},"
                f"{rng.randrange(1, 999)}.5,2026-10-{rng.randrange(1, 29):02d}T12:00:00Z\n"
                for _ in range(10_000)
            )
            out.write(lines)
            written += len(lines)
            rows += 10_000
    say(f"CSV import: {path.stat().st_size / 1024**2:.0f} MiB, {rows:,} rows, via manage.py import_events")
    started = time.perf_counter()
    # Peak RSS from the importer itself (VmHWM): ru_maxrss of a child would include what this
    # (large) process held when it forked it.
    result = subprocess.run(  # noqa: S603
        [PYTHON, "-c", IMPORT_AND_REPORT_RSS, str(path), "bench"],
        cwd=ROOT,
        env=env | {"DJANGO_SETTINGS_MODULE": "apps.config.settings"},
        check=True,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    peak_kib = int(result.stdout.rsplit("VmHWM", 1)[1].split()[0])
    path.unlink()
    Path(f"{path}.errors.csv").unlink(missing_ok=True)
    say(
        f"CSV import: {rows:,} rows in {elapsed:.1f} s = {rows / elapsed:,.0f} rows/s, "
        f"peak RSS of the import process {peak_kib / 1024:.0f} MiB (VmHWM)"
    )


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=int(os.environ.get("EVENTS", 1_000_000)))
    parser.add_argument("--batch", type=int, default=int(os.environ.get("BATCH", 5_000)))
    parser.add_argument(
        "--connections", type=int, default=4, help="concurrent HTTP connections of the client"
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--database", default=os.environ.get("BENCH_DATABASE", "trueup_bench"))
    parser.add_argument("--csv-mb", type=int, default=int(os.environ.get("CSV_MB", 100)))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return

    say(f"database {args.database} on {HOST}: create, migrate, seed")
    owner_url, app_url, app_role = prepare_database(args.database)
    owner_env = server_env(owner_url, app_role)
    migrate = [PYTHON, "manage.py", "migrate", "--noinput", "-v0"]
    subprocess.run(migrate, cwd=ROOT, env=owner_env, check=True)  # noqa: S603
    raw_key, tenant_id, accounts, meters = seed(owner_env)

    port = free_port()
    role = app_url.split("@")[0].removeprefix("postgres://")
    say(f"gunicorn: {args.workers} workers on {HOST}:{port}, TRUEUP_ENV=production, as {role}")
    server = subprocess.Popen(  # noqa: S603
        [
            str(Path(PYTHON).parent / "gunicorn"),
            "apps.config.wsgi:application",
            "--bind",
            f"{HOST}:{port}",
            "--workers",
            str(args.workers),
            "--timeout",
            "120",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=server_env(app_url, app_role),
    )
    try:
        wait_healthy(port, server)
        workers = [
            int(pid) for pid in Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        ]
        say(f"client: {args.events:,} events in batches of {args.batch:,}, {args.connections} connections")
        worker_cpu = cpu_seconds(workers)
        report = json.loads(
            subprocess.run(  # noqa: S603
                [
                    PYTHON,
                    __file__,
                    "--client",
                    f"--port={port}",
                    f"--key={raw_key}",
                    f"--events={args.events}",
                    f"--batch={args.batch}",
                    f"--connections={args.connections}",
                    f"--seed={args.seed}",
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        worker_cpu = cpu_seconds(workers) - worker_cpu
        db_cpu = cpu_seconds(
            backend_pids(owner_url, args.database)
        )  # the app's backends live on (CONN_MAX_AGE)
        # The same batches again: every event is acknowledged as a duplicate, none stored twice.
        again = json.loads(
            subprocess.run(  # noqa: S603
                [
                    PYTHON,
                    __file__,
                    "--client",
                    f"--port={port}",
                    f"--key={raw_key}",
                    f"--events={min(args.events, args.batch * 4)}",
                    f"--batch={args.batch}",
                    "--connections=2",
                    f"--seed={args.seed}",
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
    finally:
        server.terminate()
        server.wait(timeout=30)

    stored = count_events(owner_url, tenant_id)
    problems = []
    if report["statuses"] != [200] or report["accepted"] != args.events:
        problems.append(f"HTTP run: statuses {report['statuses']}, accepted {report['accepted']:,}")
    if again["accepted"] != 0:
        problems.append(f"resend stored {again['accepted']} events again")
    if stored != args.events:
        problems.append(f"{stored:,} events stored, expected {args.events:,}")
    http_rate = args.events / report["wall"]

    payloads = copy_payloads(args.events, args.batch, args.seed, accounts, meters)
    import psycopg

    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("TRUNCATE usage_usageevent")
        conn.execute("VACUUM ANALYZE usage_usageevent")
    base_seconds = baseline(app_url, tenant_id, payloads, args.workers)
    base_stored = count_events(owner_url, tenant_id)
    if base_stored != args.events:
        problems.append(f"baseline stored {base_stored:,}, expected {args.events:,}")
    base_rate = args.events / base_seconds
    ratio = http_rate / base_rate

    print()
    print(f"HTTP     : {args.events:,} events in {report['wall']:.2f} s = {http_rate:,.0f} events/s")
    print(
        f"           {report['requests']} POST /api/v1/events of {args.batch:,} events, "
        f"{args.connections} connections, gunicorn {args.workers} workers; "
        f"latency p50 {report['p50'] * 1000:.0f} ms, p99 {report['p99'] * 1000:.0f} ms; "
        f"resent {again['requests']} batches: all duplicates, none stored again"
    )
    print(
        f"           CPU during the run: gunicorn workers {worker_cpu:.1f} s, their PostgreSQL backends "
        f"{db_cpu:.1f} s (since they started), client {report['client_cpu']:.1f} s "
        f"({(worker_cpu / args.events) * 1e6:.1f} + {(db_cpu / args.events) * 1e6:.1f} µs per event)"
    )
    print(f"baseline : {args.events:,} rows   in {base_seconds:.2f} s = {base_rate:,.0f} rows/s")
    print(f"           in-process COPY + INSERT ... ON CONFLICT DO NOTHING, {args.workers} connections")
    print(f"ratio    : {ratio:.2f} x baseline (target >= 0.50)")
    print(
        f"targets  : HTTP >= 60,000 events/s {'MET' if http_rate >= 60_000 else 'MISSED'}; "
        f"HTTP >= 0.5 x baseline {'MET' if ratio >= 0.5 else 'MISSED'}"
    )
    print(f"machine  : {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end")
    if args.csv_mb:
        print()
        csv_import(owner_env | {"DATABASE_URL": app_url}, args.csv_mb, args.seed)
    if problems:
        raise SystemExit("; ".join(problems))


if __name__ == "__main__":
    main()
