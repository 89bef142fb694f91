"""What a claim costs with jobs that wait for a later time, on both stores.

For each count of delayed rows (``--delayed``, default 0, 10,000 and 100,000), one fresh
store gets that many jobs due in an hour at a HIGHER priority than the due ones (so that a
claim walking the waiting rows in claim order meets every one of them first), then
``--ready`` due jobs; then ``--claims`` claims of ``--limit`` jobs each are timed one by one
(the median is reported, in ms per claim call). The claim's cost must not depend on the
delayed rows: the last column is each row's median over the empty store's.

Wall clock swings with the machine's load, so each store's work per claim is counted too,
which does not: SQLite's virtual machine steps for one claim (a progress handler called at
every step), PostgreSQL's buffer accesses for one claim (``EXPLAIN (ANALYZE, BUFFERS)``,
shared hits and reads, in a transaction rolled back).

Run: ``python benchmarks/store_claims.py [--store sqlite|postgres|both]``
(PostgreSQL at 127.0.0.1:5432, a schema of its own, dropped after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import asyncpg

import asyncworkers as aw
from asyncworkers.store import _sqlite
from asyncworkers.store._jobs import new_job

PG = "postgresql://postgres@127.0.0.1:5432/test"
HIGH, LOW = 5, 0


@asynccontextmanager
async def sqlite_store() -> AsyncIterator[aw.store.SQLiteStore]:
    with tempfile.TemporaryDirectory(prefix="aw-claims-") as tmp:
        async with aw.store.SQLiteStore(Path(tmp) / "jobs.db") as store:
            yield store


@asynccontextmanager
async def pg_store() -> AsyncIterator[aw.store.PostgresStore]:
    schema = "bench_" + uuid.uuid4().hex[:12]
    try:
        async with aw.store.PostgresStore(f"{PG}?schema={schema}") as store:
            yield store
    finally:
        conn = await asyncpg.connect(PG)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def fill(store: aw.store.Store, delayed: int, ready: int) -> None:
    later = time.time() + 3600
    jobs = [new_job("bench.later", {"i": i}, priority=HIGH, run_at=later) for i in range(delayed)]
    jobs += [new_job("bench.now", {"i": i}, priority=LOW) for i in range(ready)]
    for start in range(0, len(jobs), 20_000):
        await store.enqueue_many(jobs[start : start + 20_000])


async def claim_costs(store: aw.store.Store, claims: int, limit: int) -> list[float]:
    costs = []
    for _ in range(claims):
        started = time.perf_counter()
        got = await store.claim(None, limit, 60.0, "bench")
        costs.append(time.perf_counter() - started)
        if len(got) != limit or any(c.task != "bench.now" for c in got):
            raise AssertionError(f"the claim took {[c.task for c in got]}")
    return costs


async def analyze(store: aw.store.Store, kind: str) -> None:
    """Fresh planner statistics, as autovacuum would have them on a long-lived table."""
    if kind == "postgres":
        assert isinstance(store, aw.store.PostgresStore)
        conn = await asyncpg.connect(PG)
        try:
            await conn.execute(f'ANALYZE "{store.schema}".jobs')
        finally:
            await conn.close()


async def measure(kind: str, delayed: int, args: argparse.Namespace) -> tuple[float, int]:
    """Median seconds per claim, and the work of one claim (steps or buffers)."""
    opener: Callable[[], AbstractAsyncContextManager[aw.store.Store]]
    opener = sqlite_store if kind == "sqlite" else pg_store
    async with opener() as store:
        await fill(store, delayed, args.claims * args.limit + 100)
        await analyze(store, kind)
        await claim_costs(store, 10, args.limit)  # warm: plans cached, pages in memory
        seconds = statistics.median(await claim_costs(store, args.claims, args.limit))
        if isinstance(store, aw.store.SQLiteStore):
            return seconds, sqlite_steps(store.path, args.limit)
        assert isinstance(store, aw.store.PostgresStore)
        return seconds, await pg_buffers(store, args.limit)


def sqlite_steps(path: str, limit: int) -> int:
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.set_progress_handler(count, 1)
        conn.execute("BEGIN IMMEDIATE")
        steps = 0
        _sqlite._claim(conn, None, limit, 60.0, "bench")
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    return steps


async def pg_buffers(store: aw.store.PostgresStore, limit: int) -> int:
    conn = await asyncpg.connect(PG)
    try:
        for name, value in store._write_settings().items():  # as the worker's pool
            await conn.execute(f"SET {name} = {value}")
        await conn.execute(f"PREPARE c(int, float8, text, int) AS {store._sql.claim_any}")
        tr = conn.transaction()
        await tr.start()
        try:
            args = f"{limit}, 60, 'bench', 1000000"
            for _ in range(5):  # the plan a pooled connection settles on
                await conn.execute(f"EXPLAIN (ANALYZE) EXECUTE c({args})")
            text = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE c({args})")
        finally:
            await tr.rollback()
        plan = json.loads(text)[0]["Plan"]
        return int(plan["Shared Hit Blocks"] + plan["Shared Read Blocks"])
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--delayed", type=int, nargs="+", default=[0, 10_000, 100_000])
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="median of this many stores")
    args = parser.parse_args()
    kinds = ("sqlite", "postgres") if args.store == "both" else (args.store,)
    print(
        f"median ms per claim of {args.limit} (median of {args.rounds} stores); work per "
        "claim: SQLite VM steps, PostgreSQL buffer accesses"
    )
    print("| store | " + " | ".join(f"{d:,} delayed" for d in args.delayed) + " | worst / empty |")
    print("| --- " * (len(args.delayed) + 2) + "|")
    for kind in kinds:
        figures, work = [], []
        for delayed in args.delayed:
            rounds = [await measure(kind, delayed, args) for _ in range(args.rounds)]
            figures.append(statistics.median(r[0] for r in rounds))
            work.append(max(r[1] for r in rounds))
        cells = " | ".join(f"{f * 1000:.3f} ms" for f in figures)
        print(f"| {kind}, time | {cells} | x{max(figures) / figures[0]:.2f} |", flush=True)
        cells = " | ".join(f"{w:,}" for w in work)
        print(f"| {kind}, work | {cells} | x{max(work) / work[0]:.2f} |", flush=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
