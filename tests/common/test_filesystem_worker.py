"""The embedded broker: a real `celery worker` process runs a task sent through files, no server."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.skipif(
    os.name != "posix", reason="kombu's filesystem transport locks its files with fcntl (POSIX only)"
)


def test_a_task_sent_by_the_app_runs_in_a_separate_worker_process(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TRUEUP_VAR_DIR": str(tmp_path / "var"),
        "CELERY_BROKER_URL": "filesystem://",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.sqlite3'}",  # the probe task needs no database
        "PYTHONUNBUFFERED": "1",
    }
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "apps.config", "worker", "-I", "tests.common.celery_probe",
         "-c", "2", "-n", f"probe-{uuid.uuid4().hex[:8]}@%h", "--without-gossip", "--without-mingle",
         "-l", "INFO"],
        cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    marker = tmp_path / "marker.txt"
    try:
        # The producer is the app as `serve_demo` configures it: settings from the environment.
        producer = textwrap.dedent(
            f"""
            import os, django
            django.setup()
            from django.conf import settings
            from tests.common.celery_probe import write_marker
            assert not settings.CELERY_TASK_ALWAYS_EAGER
            write_marker.delay({str(marker)!r}, "sent by " + str(os.getpid()))
            print(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
            """
        )
        sent = subprocess.run(
            [sys.executable, "-c", producer], cwd=settings.BASE_DIR, env=env, capture_output=True, timeout=120
        )
        assert sent.returncode == 0, sent.stderr.decode()
        assert sent.stdout.decode().strip() == str(tmp_path / "var" / "celery" / "queue")
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.2)
        assert marker.exists(), (tmp_path / "worker.log").read_text()
        text, _, pid = marker.read_text().rpartition(" ")
        assert text.startswith("sent by ")
        assert int(pid) not in (os.getpid(), int(text.removeprefix("sent by ")))  # a worker process ran it
        assert not list((tmp_path / "var" / "celery" / "queue").iterdir())  # consumed
    finally:
        worker.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)  # whatever is left of it, its pool included
        worker.wait()
        log.close()
