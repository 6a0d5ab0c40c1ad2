"""A task for the worker tests (``celery worker -I tests.common.celery_probe``): it leaves a mark."""

from __future__ import annotations

import os
from pathlib import Path

from celery import shared_task


@shared_task(name="tests.common.celery_probe.write_marker")
def write_marker(path: str, text: str) -> None:
    Path(path).write_text(f"{text} {os.getpid()}")
