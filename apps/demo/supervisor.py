"""Runs the product's processes as children: start them, wait until each answers, watch, stop them all.

Each child runs in a process group of its own, so Ctrl-C in the terminal reaches only the
supervisor, which then stops the children in reverse order of start (the web app first, the
sandboxes last, so they save their state after the last request): SIGTERM to the child, then,
after a grace period, SIGKILL to its whole group (a worker's pool processes included). On Linux a
child also gets SIGTERM if the supervisor itself is killed, so nothing is left behind.
Every child writes to ``<log_dir>/<name>.log``; a child that dies is reported with its last lines.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

Probe = Callable[[], bool]


class ChildFailed(Exception):
    """A child exited, failed or did not answer in time; ``tail`` holds its last log lines."""

    def __init__(self, name: str, message: str, tail: str = "") -> None:
        super().__init__(f"{name}: {message}")
        self.name, self.message, self.tail = name, message, tail


class Stopped(Exception):
    """Ctrl-C or SIGTERM: stop everything."""


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    one_shot: bool = False

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Supervisor:
    def __init__(
        self,
        *,
        cwd: Path,
        log_dir: Path,
        env: Mapping[str, str],
        stop_grace: float = 20.0,
        poll: float = 0.2,
    ) -> None:
        self.cwd, self.log_dir, self.env = cwd, log_dir, dict(env)
        self.stop_grace, self.poll = stop_grace, poll
        self.children: dict[str, Child] = {}
        self.stop_requested = threading.Event()
        self.force = False
        log_dir.mkdir(parents=True, exist_ok=True)

    # --- signals -------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_requested.is_set():
            self.force = True  # a second Ctrl-C: do not wait for a worker to finish its task
        self.stop_requested.set()

    def _tick(self, seconds: float | None = None) -> None:
        if self.stop_requested.wait(self.poll if seconds is None else seconds):
            raise Stopped

    # --- starting --------------------------------------------------------------------------------
    def start(
        self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None, one_shot: bool = False
    ) -> Child:
        """Start ``argv`` as ``name``, logging to ``<name>.log``.

        A service's log is appended to. A one-shot step's is rewritten, and its standard output
        goes to ``<name>.out`` on its own (what it has to say to the user; see ``output``).
        """
        if self.stop_requested.is_set():
            raise Stopped
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb" if one_shot else "ab") as log, contextlib.ExitStack() as files:
            stamp = dt.datetime.now().astimezone().isoformat(timespec="seconds")
            log.write(f"===== {stamp} {shlex.join(argv)}\n".encode())
            log.flush()
            out = files.enter_context((self.log_dir / f"{name}.out").open("wb")) if one_shot else log
            process = subprocess.Popen(  # noqa: S603 - our own argv: this interpreter and its modules
                list(argv),
                cwd=self.cwd,
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=log,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # safe here: the supervisor runs no other threads
            )
        child = Child(name, list(argv), log_path, process, one_shot=one_shot)
        self.children[name] = child
        return child

    def wait_until(self, name: str, probe: Probe, *, timeout: float) -> float:
        """Wait until ``probe()`` holds; the seconds since the child started."""
        child = self.children[name]
        deadline = time.monotonic() + timeout
        while True:
            self.check(name)
            if probe():
                self.check(name)  # it answered; make sure it was this child that did
                return time.monotonic() - child.started
            if time.monotonic() > deadline:
                raise ChildFailed(name, f"did not answer within {timeout:.0f} s", self.tail(name))
            self._tick()

    def finish(self, name: str, *, timeout: float) -> float:
        """Wait for a one-shot child to exit 0; the seconds it took."""
        child = self.children[name]
        deadline = time.monotonic() + timeout
        while child.process.poll() is None:
            if time.monotonic() > deadline:
                self._terminate([child], grace=5)
                raise ChildFailed(name, f"did not finish within {timeout:.0f} s", self.tail(name))
            self._tick()
        if child.process.returncode != 0:
            raise ChildFailed(name, f"failed (exit code {child.process.returncode})", self.tail(name))
        return time.monotonic() - child.started

    def check(self, name: str | None = None) -> None:
        """Raise ``ChildFailed`` for a service child (or ``name``) that has exited."""
        for child in [self.children[name]] if name else list(self.children.values()):
            if child.one_shot and name is None:
                continue
            code = child.process.poll()
            if code is not None and not (child.one_shot and code == 0):
                raise ChildFailed(child.name, f"exited with code {code}", self.tail(child.name))

    def watch(self) -> None:
        """Until Ctrl-C or SIGTERM (``Stopped``), or a child dies (``ChildFailed``)."""
        while True:
            self.check()
            self._tick(0.5)

    def tail(self, name: str, lines: int = 20) -> str:
        """The last lines of the child's log (and, for a one-shot step, of its output)."""
        child = self.children[name]
        paths = [child.log_path] + ([self.log_dir / f"{name}.out"] if child.one_shot else [])
        text = "".join(self._read(path) for path in paths)
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def output(self, name: str) -> str:
        """What a one-shot step wrote to its standard output."""
        return self._read(self.log_dir / f"{name}.out").rstrip()

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    # --- stopping --------------------------------------------------------------------------------
    def stop_all(self) -> None:
        """Stop every child, one after the other, the last started first (so the sandboxes outlive
        the worker's last task); SIGKILL what is left of each after the grace period."""
        for child in reversed(self.children.values()):
            self._terminate([child], grace=self.stop_grace)

    def _terminate(self, children: list[Child], *, grace: float) -> None:
        for child in children:
            if child.alive:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(c.alive for c in children) and time.monotonic() < deadline and not self.force:
            time.sleep(0.05)
        for child in children:
            # The whole group: also what the child started (a worker's pool) and left behind.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()


# --- probes ----------------------------------------------------------------------------------------
def http_answers(url: str, *, headers: Mapping[str, str] | None = None, status: int | None = None) -> bool:
    """The server at ``url`` answers HTTP (with ``status``, when given)."""
    request = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310 - our own http URL
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
            code = response.status
    except urllib.error.HTTPError as err:
        code = err.code
    except (OSError, ValueError):
        return False
    return status is None or code == status


def celery_worker_answers(node: str, *, broker_url: str, transport_options: Mapping[str, Any]) -> Probe:
    """A probe: the worker ``node`` answers a remote-control ping over the broker."""
    from celery import Celery

    app = Celery("trueup-supervisor", broker=broker_url, set_as_current=False)
    app.conf.broker_transport_options = dict(transport_options)
    app.conf.broker_connection_retry_on_startup = True

    def probe() -> bool:
        try:
            return bool(app.control.ping(destination=[node], timeout=0.5))
        except Exception:  # the broker folder/connection not there yet: not ready
            return False

    return probe
