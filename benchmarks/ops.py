"""How long a ``/metrics`` scrape takes on a worker whose store holds many jobs.

A Manager serves its operations endpoint (``http=``) over a store filled with N jobs (a
mix of queued, succeeded and dead rows, in two queues) that it does not run (it serves
another queue). The scrape is timed from the client, over loopback, two ways:

- the store read continuously in the background (``refresh`` tiny), the worst case;
- the default: the store read at most once per ``refresh`` (5) seconds, while scraped.

A scrape never waits for the store: it gets the last reading.

Run: ``python benchmarks/ops.py [--jobs 100000] [--scrapes 50] [--store sqlite|postgresql]``,
or ``python benchmarks/ops.py --idle 30`` for the CPU an idle endpoint burns per second
(PostgreSQL: the server at 127.0.0.1:5432, a schema of its own, dropped after).
Instructions per job with the endpoint on are measured by ``benchmarks/icount.py --only
plain --only plain-ops``.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

import asyncworkers as aw

PG = "postgresql://postgres@127.0.0.1:5432/test"


async def fill(store: aw.store.Store, jobs: int) -> None:
    batch = []
    for i in range(jobs):
        batch.append(aw.store.new_job("bulk", {"i": i}, queue="bulk" if i % 2 else "other-bulk"))
        if len(batch) == 5000:
            await store.enqueue_many(batch)
            batch = []
    if batch:
        await store.enqueue_many(batch)


async def scrape_times(url: str, scrapes: int) -> list[float]:
    times = []
    async with aiohttp.ClientSession() as session:
        for _ in range(scrapes):
            started = time.perf_counter()
            async with session.get(url) as response:
                await response.read()
                assert response.status == 200
            times.append(time.perf_counter() - started)
    return times


async def run(store_kind: str, jobs: int, scrapes: int) -> None:
    tasks = aw.store.TaskRegistry()

    @tasks.task("bulk")
    async def bulk(i: int) -> int:
        return i

    with tempfile.TemporaryDirectory() as folder:
        schema = "bench_ops_" + uuid.uuid4().hex[:8]
        url = f"sqlite:///{Path(folder) / 'jobs.db'}" if store_kind == "sqlite" else (
            f"{PG}?schema={schema}"
        )  # fmt: skip
        store = aw.store.open_store(url)
        async with store:
            started = time.perf_counter()
            await fill(store, jobs)
            print(f"{store_kind}: {jobs:,} jobs enqueued in {time.perf_counter() - started:.1f} s")
            for label, refresh in (("store read continuously (refresh 1 us)", 1e-6),
                                   ("cached (refresh 5 s, the default)", 5.0)):  # fmt: skip
                options = aw.ops.Options(refresh=refresh)
                manager = aw.store.Manager(
                    store, tasks, queues=["idle"], http="127.0.0.1:0", ops=options
                )
                async with manager:
                    assert manager.ops is not None
                    times = await scrape_times(manager.ops.url + "/metrics", scrapes)
                    manager.stop()
                ms = sorted(t * 1000 for t in times)
                print(f"  {label}: first {times[0] * 1000:.1f} ms, median "
                      f"{statistics.median(ms):.1f} ms, p90 {ms[int(len(ms) * 0.9) - 1]:.1f} ms, "
                      f"max {ms[-1]:.1f} ms over {scrapes} scrapes")  # fmt: skip
            if store_kind == "postgresql":
                import asyncpg

                conn = await asyncpg.connect(PG)
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                await conn.close()


async def idle_cpu(seconds: float) -> None:
    """CPU time an idle Runtime burns per second, with and without the endpoint (the loop
    probe's round trips, the bucketing and chart timers): the endpoint's cost per second,
    the part of ``icount.py``'s plain-ops figure that callgrind's slowness inflates."""
    for label, on in (("endpoint off", False), ("endpoint on", True)):
        async with aw.Runtime(8) as rt:
            ops = aw.ops.serve(rt, "127.0.0.1", 0, aw.ops.Options(stuck_after=3600.0))
            if on:
                await ops.__aenter__()
            before = resource.getrusage(resource.RUSAGE_SELF)
            await asyncio.sleep(seconds)
            after = resource.getrusage(resource.RUSAGE_SELF)
            if on:
                await ops.__aexit__(None, None, None)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        print(f"  idle, {label}: {cpu / seconds * 1e3:.2f} ms of CPU per second")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), action="append")
    parser.add_argument(
        "--idle",
        type=float,
        metavar="SECONDS",
        help="only measure the CPU an idle endpoint burns, over SECONDS",
    )
    args = parser.parse_args()
    if args.idle:
        asyncio.run(idle_cpu(args.idle))
        return
    for kind in args.store or ["sqlite", "postgresql"]:
        asyncio.run(run(kind, args.jobs, args.scrapes))


if __name__ == "__main__":
    main()
