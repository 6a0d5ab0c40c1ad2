"""`serve_demo` (what `make run` runs): starts every component, then stops all of them on SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.db import connection

from apps.providers.sandbox.stripe import StripeSandboxServer
from tests.common.processes import free_port, processes_with_env

pytestmark = [
    pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds leftover processes through /proc (Linux)"),
    pytest.mark.django_db(transaction=True),
]

# A trivial loading step that shows what the real loader is given: the sandboxes' URLs.
LOAD = "shell -c 'from django.conf import settings as s; print(\"loader sees\", s.STRIPE_SANDBOX_URL)'"


def database_url(tmp_path: Path) -> str:
    """The test database when the children can open it (PostgreSQL); else a fresh SQLite file."""
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
        return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    return f"sqlite:///{tmp_path / 'trueup.sqlite3'}"


class ServeDemo:
    def __init__(self, tmp_path: Path, *extra: str) -> None:
        self.var = tmp_path / "var"
        self.port, self.stripe_port, self.chargebee_port = free_port(), free_port(), free_port()
        env = {
            **os.environ,
            "TRUEUP_VAR_DIR": str(self.var),
            "DATABASE_URL": database_url(tmp_path),
            "PYTHONUNBUFFERED": "1",
        }
        argv = [sys.executable, "manage.py", "serve_demo", "--port", str(self.port),
                "--stripe-port", str(self.stripe_port), "--chargebee-port", str(self.chargebee_port),
                "--timeout", "240", *extra]  # fmt: skip
        self.process = subprocess.Popen(
            argv,
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 400) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert self.process.poll() is None or text in self.output, self.output
            assert time.monotonic() < deadline, f"no {text!r} within {timeout} s:\n{self.output}"
            time.sleep(0.2)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=120)
        finally:
            self.reader.join(timeout=5)

    def leftovers(self) -> list[int]:
        return processes_with_env(str(self.var))

    def kill_all(self) -> None:
        for pid in [*self.leftovers(), self.process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def serve(tmp_path: Path) -> Any:
    started: list[ServeDemo] = []

    def run(*extra: str) -> ServeDemo:
        started.append(ServeDemo(tmp_path, *extra))
        return started[-1]

    yield run
    for demo in started:
        demo.kill_all()  # only if the test failed half-way


def test_serve_demo_starts_every_component_and_sigterm_stops_them_all(serve: Any) -> None:
    demo = serve("--load-command", LOAD)
    demo.wait_for("Trueup is running on")
    for component in ("stripe sandbox", "chargebee sandbox", "worker", "beat", "demo data", "web"):
        assert f"ok  {component}" in demo.output
    assert f"loader sees http://127.0.0.1:{demo.stripe_port}" in demo.output
    health = requests.get(f"http://127.0.0.1:{demo.port}/healthz", timeout=10)
    assert health.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}  # a real broker
    # The sandboxes answer, and what is written to them is kept under var/sandbox/.
    created = requests.post(
        f"http://127.0.0.1:{demo.stripe_port}/v1/customers",
        data={"name": "Kept"},
        headers={"Authorization": "Bearer sk_test_trueup_sandbox"},
        timeout=10,
    )
    assert created.status_code == 200
    running = demo.leftovers()
    assert len(running) >= 7  # 2 sandboxes, the worker + its 2 processes + beat, web, the supervisor

    assert demo.stop() == 0
    assert "Stopped." in demo.output
    assert demo.leftovers() == []
    with StripeSandboxServer(state_file=demo.var / "sandbox" / "stripe.pickle") as restarted:
        assert [c["name"] for c in restarted.sandbox.state.objects["customer"].values()] == ["Kept"]
    logs = {p.name for p in (demo.var / "log").iterdir()}
    assert {"stripe.log", "chargebee.log", "worker.log", "web.log", "load.log"} <= logs


def test_a_child_that_dies_is_reported_with_its_log_and_the_rest_is_stopped(serve: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # the Stripe sandbox cannot have its port
        taken.listen()
        demo = serve("--load-command", "", "--stripe-port", str(taken.getsockname()[1]))
        assert demo.process.wait(timeout=300) == 1
    demo.reader.join(timeout=5)
    assert "FAIL  stripe: exited with code 1" in demo.output
    assert "Address already in use" in demo.output  # the last lines of var/log/stripe.log
    assert demo.leftovers() == []
