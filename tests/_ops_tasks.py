"""The tasks of the operations tests' worker processes (``--tasks tests._ops_tasks:tasks``).

Jobs that a test waits on write a marker file when they start, and jobs that must stay
running wait for a release file: the tests wait for events, never for time.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import asyncworkers as aw

tasks = aw.store.TaskRegistry()

# Polling step of the jobs that wait for a file: a job's own pace, not a test timeout.
_STEP = 0.02


def _exists(path: str) -> bool:
    return Path(path).exists()


def _mark(path: str, text: str | None = None) -> None:
    with Path(path).open("a") as f:  # one short line per append: whole lines, any process
        f.write(f"{os.getpid() if text is None else text}\n")


@tasks.task("echo")
async def echo(value: Any = None) -> Any:
    """Return *value*."""
    return value


@tasks.task("fail_unless", retry=aw.Retry(attempts=1))
async def fail_unless(path: str) -> str:
    """Fail unless the file *path* exists (a dead letter that a retry can fix)."""
    if not _exists(path):
        raise ValueError(f"no {path} yet")
    return "fixed"


@tasks.task("hold")
async def hold(path: str, release: str) -> str:
    """Mark the start, then run until the file *release* exists."""
    _mark(path)
    while not _exists(release):
        await asyncio.sleep(_STEP)
    return "released"


@tasks.task("block_loop")
async def block_loop(path: str, release: str) -> str:
    """Mark the start, then block the event loop (a bug in user code) until *release*."""
    _mark(path)
    while not _exists(release):
        time.sleep(_STEP)  # noqa: ASYNC251 - blocking the loop is the point of this task
    return "unblocked"


@tasks.task("tagged_hold")
async def tagged_hold(path: str, release: str, tag: int) -> int:
    """Append *tag* to *path* when it starts (one line per run), then run until *release*."""
    _mark(path, str(tag))
    while not _exists(release):
        await asyncio.sleep(_STEP)
    return tag
