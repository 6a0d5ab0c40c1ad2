"""The server's clock, which a replay (the demo loader) may set for the code it calls in-process.

``received_at`` and every cut-off compare against this clock. Production code never sets it;
the demo replays three months of traffic and needs each event to arrive when it would have.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.utils import timezone

_replay: ContextVar[dt.datetime | None] = ContextVar("trueup_replay_clock", default=None)


def now() -> dt.datetime:
    return _replay.get() or timezone.now()


@contextmanager
def replaying(at: dt.datetime) -> Iterator[None]:
    """Within the block (this thread or task only), the server's clock reads ``at``."""
    if timezone.is_naive(at):
        raise ValueError("A replay time must be aware.")
    token = _replay.set(at)
    try:
        yield
    finally:
        _replay.reset(token)
