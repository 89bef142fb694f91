"""The tasks of the store tests' worker processes (``--tasks tests._store_tasks:tasks``).

Each job that the tests watch writes a line to a marker file when it starts, so that a test
waits for an event (the file, the database row), never for time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import asyncworkers as aw

tasks = aw.store.TaskRegistry()

# Polling step of the jobs that wait for a file: a job's own pace, not a test timeout.
_STEP = 0.02


def _mark(path: str, text: str = "") -> None:
    with Path(path).open("a") as f:  # one short line per append: whole lines, any process
        f.write(f"{os.getpid()} {text}\n")


def _exists(path: str) -> bool:
    return os.path.exists(path)


def _count_lines(path: str) -> int:
    return len(Path(path).read_text().splitlines())


@tasks.task("echo")
async def echo(value: Any = None) -> Any:
    """Return *value*."""
    return value


@tasks.task("mark")
async def mark(path: str, value: Any = None) -> Any:
    """Append this run to *path* (one line per run), return *value*."""
    _mark(path, str(value))
    return value


@tasks.task("hold", retry=aw.Retry(attempts=3, backoff=0.0))
async def hold(path: str, release: str) -> str:
    """Mark the start, then run until the file *release* exists."""
    _mark(path, "start")
    while not _exists(release):
        await asyncio.sleep(_STEP)
    _mark(path, "done")
    return "released"


@tasks.task("suicide", retry=aw.Retry(attempts=2, backoff=0.0))
async def suicide(path: str) -> None:
    """Mark the start, then SIGKILL the worker process running it."""
    _mark(path, "start")
    os.kill(os.getpid(), signal.SIGKILL)


@tasks.task("block_loop")
async def block_loop(path: str, seconds: float) -> str:
    """Block the event loop (a bug in user code) for *seconds*, then return."""
    _mark(path, "start")
    time.sleep(seconds)  # noqa: ASYNC251 - blocking the loop is the point of this task
    _mark(path, "done")
    return "unblocked"


@tasks.task("fail_until", retry=aw.Retry(attempts=3, backoff=0.01))
async def fail_until(path: str, ok_on: int) -> int:
    """Fail until the *ok_on*-th run (counted in *path*), then return the run number."""
    _mark(path, "run")
    runs = _count_lines(path)
    if runs < ok_on:
        raise ConnectionError(f"flaky, run {runs}")
    return runs


@tasks.task("not_json")
async def not_json() -> object:
    """Return something JSON cannot hold."""
    return {1, 2}


@tasks.task("slow_thread", kind="thread")
def slow_thread(seconds: float) -> float:
    """Blocking code in a thread that checks for cancellation."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        aw.check_cancelled()
        time.sleep(_STEP)
    return seconds


@tasks.task("square", kind="process")
def square(n: int) -> int:
    """CPU work in a worker process of the Runtime's pool."""
    return n * n
