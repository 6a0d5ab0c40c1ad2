"""The embedded Celery broker: kombu's filesystem transport, messages as files under one folder.

It needs no server, so ``make run`` (``serve_demo``) gives the app a real worker process on a
laptop; production uses Redis (``CELERY_BROKER_URL=redis://...``). Producers and the worker share
one queue folder (``data_folder_in`` = ``data_folder_out``); ``control`` holds the exchange
bindings that remote control (``celery inspect ping``) and fanout need across processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FILESYSTEM_BROKER_URL = "filesystem://"


def filesystem_broker_options(root: Path) -> dict[str, Any]:
    """Transport options for the filesystem broker under ``root`` (the folders are created)."""
    queue, control = root / "queue", root / "control"
    for folder in (queue, control):
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(queue),
        "data_folder_out": str(queue),
        "control_folder": str(control),
        # How often an idle worker looks for new message files (kombu's default is 1 s).
        "polling_interval": 0.2,
    }
