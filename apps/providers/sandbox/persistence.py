"""Sandbox state that survives a restart: a state file, and a clean stop on SIGTERM as on Ctrl-C.

``StateFile`` keeps the *data* attributes of the sandbox's state objects (objects, meter events,
idempotency keys and their stored answers, id counters, webhook settings, undelivered events,
clocks...) in one pickle file. It is generic on purpose: whatever attribute a state object gains
later is kept too, unless it is machinery (a lock, a thread, a compiled route table, a callable),
which the new process builds for itself. A change is saved shortly after the request that made it
(changes arriving together are saved once), atomically (temp file + ``os.replace``), and ``close()``
saves whatever is left, so a clean shutdown never loses an acknowledged write.

The file is pickle: the state holds sets, tuples, ``Decimal``s and counters that JSON cannot carry.
It is only ever read back from the path the operator gave, written by the sandbox itself.
"""

from __future__ import annotations

import ast
import contextlib
import itertools
import logging
import os
import pickle
import re
import signal
import tempfile
import threading
from collections.abc import Collection, Mapping
from io import BytesIO
from pathlib import Path
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

FORMAT = 1
_MACHINERY = (type(threading.Lock()), type(threading.RLock()), threading.Thread, threading.Event, re.Pattern)


def _is_machinery(value: Any, depth: int = 2) -> bool:
    """A lock, thread, compiled pattern or callable, or a container of them (a route table).

    Lists and dicts are taken to be homogeneous and judged by their first item, so that this stays
    cheap on a state of a million meter events; a tuple (a record) by all of its items.
    """
    if callable(value) or isinstance(value, _MACHINERY):
        return True
    if not depth:
        return False
    if isinstance(value, tuple):
        return any(_is_machinery(item, depth - 1) for item in value)
    if isinstance(value, list) and value:
        return _is_machinery(value[0], depth - 1)
    if isinstance(value, dict) and value:
        return _is_machinery(next(iter(value.values())), depth - 1)
    return False


def data_attributes(obj: object, exclude: Collection[str] = ()) -> dict[str, Any]:
    """The attributes of ``obj`` that are state, not machinery."""
    return {
        name: value for name, value in vars(obj).items() if name not in exclude and not _is_machinery(value)
    }


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        # An id sequence (``itertools.count``): kept as its next value. Pickling counters by their
        # own ``__reduce__`` is deprecated from Python 3.12.
        if type(obj) is itertools.count:
            args = ast.literal_eval(repr(obj).removeprefix("count"))
            return itertools.count, args if isinstance(args, tuple) else (args,)
        return NotImplemented


def dumps(data: Any) -> bytes:
    buffer = BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(data)
    return buffer.getvalue()


class StateFile:
    """Keeps ``targets`` (name → state object) in ``path``; callers hold ``lock`` while they mutate them."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        targets: Mapping[str, object],
        *,
        lock: Any,
        exclude: Mapping[str, Collection[str]] | None = None,
        delay: float = 0.05,
    ) -> None:
        self.path = Path(path)
        self.targets = dict(targets)
        self.lock = lock
        self.exclude = dict(exclude or {})
        self.delay = delay
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # --- reading and writing -----------------------------------------------------------------
    def snapshot(self) -> bytes:
        with self.lock:
            data = {
                name: data_attributes(obj, self.exclude.get(name, ())) for name, obj in self.targets.items()
            }
            return dumps({"format": FORMAT, "targets": data})

    def load(self) -> bool:
        """Restore the targets from the file; False when there is no file yet."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return False
        data = pickle.loads(raw)  # noqa: S301 - our own file, at a path the operator chose
        if data.get("format") != FORMAT:
            raise ValueError(f"{self.path}: unknown sandbox state format {data.get('format')!r}")
        with self.lock:
            for name, attributes in data["targets"].items():
                target = self.targets.get(name)
                if target is None:
                    continue
                skip = self.exclude.get(name, ())
                for attribute, value in attributes.items():
                    if attribute not in skip:
                        setattr(target, attribute, value)
        return True

    def save(self) -> None:
        """Write the state now: to a temp file beside the target, then ``os.replace`` (atomic)."""
        with self._write_lock:
            payload = self.snapshot()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(payload)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temp, self.path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
                raise

    # --- saving after changes ------------------------------------------------------------------
    def start(self) -> StateFile:
        self._thread = threading.Thread(target=self._run, name=f"state-file:{self.path.name}", daemon=True)
        self._thread.start()
        return self

    def changed(self) -> None:
        """The state changed: save it soon (the saver thread), or now when no thread runs."""
        if self._thread is None:
            self.save()
        else:
            self._wake.set()

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait()
            if self._closed.is_set():
                return
            self._closed.wait(self.delay)  # gather the changes of a burst of requests into one save
            self._wake.clear()
            try:
                self.save()
            except Exception:  # a full disk must not take the sandbox down; close() tries again
                log.exception("saving the sandbox state to %s failed", self.path)

    def close(self) -> None:
        """Stop the saver thread and save the final state (the clean-shutdown path)."""
        self._closed.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.save()


def wait_for_stop_signal() -> int:
    """Block until SIGINT (Ctrl-C) or SIGTERM; returns the signal number.

    A supervisor stops its children with SIGTERM, which by default would end the process at once,
    before the state file gets its last save.
    """
    received: list[int] = []
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    return received[0]
