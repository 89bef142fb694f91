"""SyncRuntime round trips next to ThreadPoolExecutor, from plain threads.

A round trip is ``submit(fn, i).result()``: hand one trivial job in, wait for its result.
That is the whole cost a sync caller pays per job: the hop into the runtime, the job, the
hop back. Measured, with the same trivial function ``return i`` everywhere:

- ThreadPoolExecutor(8): ``pool.submit(plain, i).result()``, the peer;
- SyncRuntime(8), plain function: the job runs in an anyio worker thread (four thread
  hops: caller -> loop -> worker thread -> loop -> caller);
- SyncRuntime(8), coroutine function: the job runs on the loop (two hops);

each on the asyncio and on the uvloop background loop, in two shapes:

1. sequential: one thread, one round trip after the other (latency-bound);
2. producers: ``--threads`` threads (default 8) at once, each doing sequential round trips
   (how the hand-in scales when many threads share one loop);
3. batch: one thread submits every job first, then takes every result (a fan-out, or
   ``map``): hand-ins coalesce, one wake of the loop takes many jobs.

Rounds alternate the peers in a shuffled order and the best round of each is kept; every
runtime and pool is warm before the first round. The ratio column is jobs/s over the
ThreadPoolExecutor's jobs/s in the same shape.

Run: ``python benchmarks/sync.py [--quick] [--jobs N] [--threads N] [--rounds R]``.
Timings compare peers within one run, on one machine, never absolute.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

import asyncworkers as aw

WORKERS = 8


def plain(i: int) -> int:
    return i


async def coro(i: int) -> int:
    return i


Submit = Callable[[int], "Future[Any]"]


@dataclass
class Peer:
    name: str
    submit: Submit
    best: dict[str, float] = field(default_factory=dict)  # shape -> jobs/s


def sequential(submit: Submit, n: int) -> float:
    """Round trips per second from this thread, one after the other."""
    start = time.perf_counter()
    for i in range(n):
        submit(i).result()
    return n / (time.perf_counter() - start)


def batch(submit: Submit, n: int) -> float:
    """Jobs per second from this thread submitting n jobs first, then taking each result."""
    start = time.perf_counter()
    futures = [submit(i) for i in range(n)]
    for future in futures:
        future.result()
    return n / (time.perf_counter() - start)


def producers(submit: Submit, n: int, threads: int) -> float:
    """Round trips per second of *threads* threads at once, n in all."""
    per_thread = max(1, n // threads)
    barrier = threading.Barrier(threads + 1)

    def produce() -> None:
        barrier.wait()
        for i in range(per_thread):
            submit(i).result()

    pool = [threading.Thread(target=produce) for _ in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in pool:
        thread.join()
    return per_thread * threads / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="round trips per measurement")
    parser.add_argument("--threads", type=int, default=8, help="producer threads")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best is kept")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.rounds = 2_000, 1
    console = Console(width=None if sys.stdout.isatty() else 120)

    with (
        ThreadPoolExecutor(WORKERS) as pool,
        aw.SyncRuntime(WORKERS, threads=WORKERS, use_uvloop=False) as on_asyncio,
        aw.SyncRuntime(WORKERS, threads=WORKERS, use_uvloop=True) as on_uvloop,
        # A bound that is never reached must cost nothing (issue 7, item 11).
        aw.SyncRuntime(WORKERS, use_uvloop=True, max_pending=10 * args.jobs) as bounded,
    ):
        peers = [
            Peer("ThreadPoolExecutor, plain fn", lambda i: pool.submit(plain, i)),
            Peer("SyncRuntime asyncio, plain fn", lambda i: on_asyncio.submit(plain, i)),
            Peer("SyncRuntime asyncio, coroutine", lambda i: on_asyncio.submit(coro, i)),
            Peer("SyncRuntime uvloop, plain fn", lambda i: on_uvloop.submit(plain, i)),
            Peer("SyncRuntime uvloop, coroutine", lambda i: on_uvloop.submit(coro, i)),
            Peer("SyncRuntime uvloop, coro, max_pending", lambda i: bounded.submit(coro, i)),
        ]
        for peer in peers:  # warm: threads started, caches filled
            producers(peer.submit, min(args.jobs, 2_000), args.threads)
        shapes: dict[str, Callable[[Submit], float]] = {
            "sequential": lambda submit: sequential(submit, args.jobs),
            "producers": lambda submit: producers(submit, args.jobs, args.threads),
            "batch": lambda submit: batch(submit, args.jobs),
        }
        for round_ in range(args.rounds):
            for shape, measure in shapes.items():
                for peer in random.sample(peers, len(peers)):
                    rate = measure(peer.submit)
                    peer.best[shape] = max(rate, peer.best.get(shape, 0.0))
                    console.log(
                        f"round {round_ + 1}/{args.rounds}  {shape:<10} {peer.name:<30} "
                        f"{rate:>10,.0f} jobs/s"
                    )

    baseline = peers[0].best
    table = Table(
        title=(
            f"submit(fn, i).result() round trips, {WORKERS} workers, best of {args.rounds} "
            f"rounds of {args.jobs:,}; producers: {args.threads} threads"
        )
    )
    table.add_column("peer")
    for shape in shapes:
        table.add_column(f"{shape} jobs/s", justify="right")
        table.add_column("vs TPE", justify="right")
    for peer in peers:
        cells = [peer.name]
        for shape in shapes:
            rate = peer.best[shape]
            cells += [f"{rate:,.0f}", f"{rate / baseline[shape]:.2f}x"]
        table.add_row(*cells)
    console.print(table)
    console.print(
        f"Python {platform.python_version()} ({sys.platform}), "
        f"aw {aw.__version__}, {threading.active_count()} threads alive at the end"
    )


if __name__ == "__main__":
    main()
