"""The job bodies of ``asyncworkers demo``.

They live at module level in a module of their own so that the process job pickles by
reference and its worker process imports only this small module, not the CLI.
"""

from __future__ import annotations

import asyncio
import time

from .._core._cancel import check_cancelled
from .._core._units import current_job

__all__ = ["blocking_poll", "crunch", "flaky_fetch", "io_call", "sleep_forever"]


async def io_call(seconds: float) -> float:
    """Pretend I/O: sleep for *seconds* and return them."""
    await asyncio.sleep(seconds)
    return seconds


async def sleep_forever() -> None:
    """Wait until cancelled (by a token, ``job.cancel()`` or a timeout)."""
    await asyncio.sleep(3600)


async def flaky_fetch(succeed_on: int) -> str:
    """Fail until the job's attempt number *succeed_on*, then succeed."""
    job = current_job()
    attempt = job.attempts if job is not None else succeed_on
    if attempt < succeed_on:
        raise ConnectionError(f"flaky upstream (attempt {attempt})")
    return f"ok on attempt {attempt}"


def blocking_poll(steps: int, step_seconds: float) -> int:
    """Blocking code for a thread: sleep in short steps, stopping early when cancelled.

    Returns the number of steps done; raises ``JobCancelled`` from ``check_cancelled()``.
    """
    for _ in range(steps):
        check_cancelled()
        time.sleep(step_seconds)
    return steps


def crunch(n: int) -> int:
    """CPU work for a process: the sum of the squares below *n*."""
    return sum(i * i for i in range(n))
