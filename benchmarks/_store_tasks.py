"""The tasks of benchmarks/store.py, for ``asyncworkers worker --tasks _store_tasks:tasks``.

``noop`` is the trivial job whose rate is measured; ``stamp`` appends ``index start-time`` to
the file named by $AW_BENCH_STAMPS (pick-up latency); ``sleepy`` holds a job for the SIGKILL
measurement and stamps each start.
"""

from __future__ import annotations

import asyncio
import os
import time

import asyncworkers as aw

tasks = aw.store.TaskRegistry()


@tasks.task("noop")
async def noop() -> None:
    return None


def _stamp(i: int) -> None:
    with open(os.environ["AW_BENCH_STAMPS"], "a") as f:
        f.write(f"{i} {time.time()!r}\n")


@tasks.task("stamp")
async def stamp(i: int) -> None:
    _stamp(i)


@tasks.task("sleepy")
async def sleepy(i: int, seconds: float) -> None:
    _stamp(i)
    await asyncio.sleep(seconds)


@tasks.task("sleep")
async def sleep(seconds: float) -> None:
    """Hold a worker slot for *seconds* without using the CPU (benchmarks/scale.py)."""
    await asyncio.sleep(seconds)
