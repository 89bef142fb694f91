"""The tasks of the multi-host tests' workers (``--tasks tests._scale_tasks:tasks``).

Each worker process runs in a host (a network namespace, tests/_hosts.py) whose name is in
``$AW_SCALE_HOST``. ``effect`` has a side effect of its own in the database: one row with a
unique key per run, so that a second run of a job fails loudly (and shows as an attempt).
``nap`` writes each run's start and end to a file (files are shared by every host and do
not go through the network, so a run on a cut-off host is seen too).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg

import asyncworkers as aw

tasks = aw.store.TaskRegistry()

HOST = os.environ.get("AW_SCALE_HOST", "?")
_pool: asyncio.Task[asyncpg.Pool] | None = None


async def _effects() -> asyncpg.Pool:
    """One small pool per worker process (made by the first job that needs it)."""
    global _pool
    if _pool is None:
        _pool = asyncio.ensure_future(
            asyncpg.create_pool(
                os.environ["AW_SCALE_DSN"],
                min_size=1,
                max_size=4,
                server_settings={"application_name": os.environ["AW_SCALE_APP"]},
            )
        )
    return await asyncio.shield(_pool)


@tasks.task("effect")
async def effect(key: str) -> str:
    """Insert this run's row (unique *key*) into the effects table; return the host."""
    pool = await _effects()
    await pool.execute(
        f"INSERT INTO {os.environ['AW_SCALE_TABLE']} (key, host, pid) VALUES ($1, $2, $3)",
        key,
        HOST,
        os.getpid(),
    )
    return HOST


def _note(key: str, what: str) -> None:
    path = Path(os.environ["AW_SCALE_RUNS"]) / f"{HOST}-{os.getpid()}"
    with path.open("a") as f:  # one short line per append: whole lines
        f.write(f"{key} {what} {HOST} {os.getpid()}\n")


@tasks.task("nap", retry=aw.Retry(attempts=3, backoff=0.0))
async def nap(key: str, seconds: float) -> str:
    """Note the start, sleep *seconds*, note the end; return the host."""
    _note(key, "start")
    await asyncio.sleep(seconds)
    _note(key, "done")
    return HOST
