"""pgqueuer 1.6 worker for benchmarks/store.py: ``python _peer_pgqueuer.py DSN``.

Runs through ``pgqueuer.run(factory, batch_size=10)`` (its documented programmatic runner;
``pgq run`` 1.6 crashes with typer 0.29 in setup_fancy_logger). Tasks as in _store_tasks.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pgqueuer
from pgqueuer import Job, PgQueuer

DSN = sys.argv[1] if len(sys.argv) > 1 else ""


def _stamp(i: int) -> None:
    with open(os.environ["AW_BENCH_STAMPS"], "a") as f:
        f.write(f"{i} {time.time()!r}\n")


@asynccontextmanager
async def factory() -> AsyncIterator[PgQueuer]:
    conn = await asyncpg.connect(DSN)
    pgq = PgQueuer.from_asyncpg_connection(conn)

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        return None

    @pgq.entrypoint("stamp")
    async def stamp(job: Job) -> None:
        _stamp(int(job.payload or b"0"))

    try:
        yield pgq
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(pgqueuer.run(factory, batch_size=10))
