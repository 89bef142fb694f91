"""SQLite durable jobs: asyncworkers' SQLiteStore and Manager beside huey's SqliteHuey.

Measured in one run, on one SQLite file per side in a temporary folder (WAL and
synchronous=NORMAL for both):

- enqueue one by one, and in bulk (``enqueue_many``; huey has no bulk enqueue, so its
  figure is its one-by-one rate again);
- processing: ``--jobs`` trivial jobs enqueued first, then ONE worker process with
  concurrency 10 (``python -m asyncworkers worker --concurrency 10``; huey's consumer with
  10 threads, the way its docs run it) drains them. The rate counts from the first job's
  start to the last job's finish, so process start-up is left out on both sides;
- pick-up latency: an idle worker, one job enqueued at a time, enqueue to task start (p50);
- the in-process Manager (no worker process) and the bare Runtime (no store) as reference.

Run: ``python benchmarks/store_sqlite.py [--jobs 5000] [--rounds 3]``. The best round of
each side is kept; ratios compare the sides of one run, never absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

import asyncworkers as aw

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CONCURRENCY = 10

tasks = aw.store.TaskRegistry()


@tasks.task("bench.nothing", retry=aw.Retry(attempts=1))
async def nothing(i: int) -> float:
    """The trivial job: return when it ran."""
    return time.time()


# -- asyncworkers ---------------------------------------------------------------------------


async def aw_enqueue(path: Path, n: int, bulk: bool) -> float:
    async with aw.store.SQLiteStore(path) as store:
        started = time.perf_counter()
        if bulk:
            await store.enqueue_many(tasks.job("bench.nothing", {"i": i}) for i in range(n))
        else:
            for i in range(n):
                await tasks.enqueue(store, "bench.nothing", {"i": i})
        return n / (time.perf_counter() - started)


def aw_worker(path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "asyncworkers", "worker", "--store", f"sqlite:///{path}",
         "--tasks", "benchmarks.store_sqlite:tasks", "--concurrency", str(CONCURRENCY),
         "--poll-interval", "1"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def aw_window(path: Path, n: int) -> float:
    """Wait until all n jobs succeeded; their rate from first start to last finish."""
    async with aw.store.SQLiteStore(path) as store:
        while (await store.counts())["succeeded"] < n:
            await anyio.sleep(0.05)
    return n / _window(path)


def _window(path: Path) -> float:
    """Seconds from the first job's start to the last job's finish, as the store has them."""
    with sqlite3.connect(path) as conn:
        first, last = conn.execute(
            "SELECT min(started_at), max(finished_at) FROM aw_jobs"
        ).fetchone()
    return float(last - first)


def aw_process(path: Path, n: int) -> float:
    anyio.run(aw_enqueue, path, n, True)
    worker = aw_worker(path)
    try:
        return anyio.run(aw_window, path, n)
    finally:
        worker.terminate()
        worker.wait()


async def aw_inprocess(path: Path, n: int) -> float:
    async with aw.store.SQLiteStore(path) as store:
        await store.enqueue_many(tasks.job("bench.nothing", {"i": i}) for i in range(n))
        async with aw.store.Manager(store, tasks, concurrency=CONCURRENCY) as manager:
            while (await store.counts())["succeeded"] < n:
                await anyio.sleep(0.05)
            manager.stop()
    return n / _window(path)


async def bare_runtime(n: int) -> float:
    async with aw.Runtime(workers=CONCURRENCY) as rt:
        started = time.perf_counter()
        for i in range(n):
            rt.submit_nowait(nothing, i)
        await rt.join()
        return n / (time.perf_counter() - started)


async def aw_pickup(path: Path, samples: int) -> float:
    worker = aw_worker(path)
    try:
        async with aw.store.SQLiteStore(path) as store:
            await store.result(await tasks.enqueue(store, "bench.nothing", {"i": -1}), 120)
            waits = []
            for i in range(samples):
                await anyio.sleep(0.05)  # idle: the worker waits for work
                sent = time.time()
                ran = await store.result(await tasks.enqueue(store, "bench.nothing", {"i": i}))
                waits.append(ran - sent)
        return statistics.median(waits)
    finally:
        worker.terminate()
        worker.wait()


# -- huey -----------------------------------------------------------------------------------


def huey_app(path: Path) -> tuple[Any, Any]:
    """huey on the SQLite file, and its task (calling it enqueues and returns a Result)."""
    from huey import SqliteHuey
    from huey.storage import SqliteStorage

    class NormalSync(SqliteStorage):  # type: ignore[misc]
        """WAL (huey's default) and synchronous=NORMAL, as SQLiteStore: the same durability
        (huey's own switch offers only FULL or OFF)."""

        def _create_connection(self) -> Any:
            conn = super()._create_connection()
            conn.execute("pragma synchronous=1")
            return conn

    huey = SqliteHuey("bench", filename=str(path), storage_class=NormalSync)
    return huey, huey.task(name="nothing")(_huey_nothing)


def _huey_nothing(i: int) -> float:
    return time.time()


def huey_enqueue(path: Path, n: int) -> tuple[float, list[Any]]:
    _, task = huey_app(path)
    started = time.perf_counter()
    results = [task(i) for i in range(n)]
    return n / (time.perf_counter() - started), results


def huey_consumer_main(path: str) -> None:
    """``--huey-consumer PATH``: run huey's consumer, 10 threads, until SIGTERM."""
    huey, _ = huey_app(Path(path))
    consumer = huey.create_consumer(
        workers=CONCURRENCY, worker_type="thread", periodic=False, initial_delay=0.01,
        max_delay=0.1, check_worker_health=False,
    )  # fmt: skip
    consumer.run()


def huey_consumer(path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, "--huey-consumer", str(path)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def huey_process(path: Path, n: int) -> float:
    _, results = huey_enqueue(path, n)
    consumer = huey_consumer(path)
    try:
        ends = [r.get(blocking=True, timeout=600) for r in results]
        # huey records no start time; its job returns when it ran: the window from the
        # first run to the last misses the first job's own run time, in huey's favour.
        return n / (max(ends) - min(ends))
    finally:
        consumer.terminate()
        consumer.wait()


def huey_pickup(path: Path, samples: int) -> float:
    _, task = huey_app(path)
    consumer = huey_consumer(path)
    try:
        task(-1).get(blocking=True, timeout=120)
        waits = []
        for i in range(samples):
            time.sleep(0.05)
            sent = time.time()
            ran = task(i).get(blocking=True, timeout=120)
            waits.append(ran - sent)
        return statistics.median(waits)
    finally:
        consumer.terminate()
        consumer.wait()


# -- the run --------------------------------------------------------------------------------


def best(rounds: int, fn: Any, *args: Any) -> float:
    values = []
    for r in range(rounds):
        with tempfile.TemporaryDirectory() as folder:
            values.append(fn(Path(folder) / f"r{r}.db", *args))
    return max(values)


def best_low(rounds: int, fn: Any, *args: Any) -> float:
    return -best(rounds, lambda *a: -fn(*a), *args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pickups", type=int, default=30)
    parser.add_argument(
        "--enqueue-only", action="store_true", help="only the one-by-one enqueue row"
    )
    parser.add_argument("--huey-consumer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.huey_consumer:
        huey_consumer_main(args.huey_consumer)
        return
    n, rounds = args.jobs, args.rounds
    one = min(n, 2000)
    rows = [
        ("enqueue one by one (jobs/s)",
         best(rounds, lambda p: anyio.run(aw_enqueue, p, one, False)),
         best(rounds, lambda p: huey_enqueue(p, one)[0])),
    ]  # fmt: skip
    if not args.enqueue_only:
        rows += [
        ("bulk enqueue (jobs/s)",
         best(rounds, lambda p: anyio.run(aw_enqueue, p, n, True)),
         best(rounds, lambda p: huey_enqueue(p, n)[0])),
        (f"process, 1 worker process, concurrency {CONCURRENCY} (jobs/s)",
         best(rounds, aw_process, n), best(rounds, huey_process, n)),
        ("idle pick-up p50 (ms)",
         1000 * best_low(1, lambda p: anyio.run(aw_pickup, p, args.pickups)),
         1000 * best_low(1, huey_pickup, args.pickups)),
        ]  # fmt: skip
    print(f"SQLite, {n} trivial jobs, best of {rounds}, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cpus")  # fmt: skip
    print(f"{'':55} {'asyncworkers':>13} {'huey 3.x':>10} {'ratio':>7}")
    for label, ours, theirs in rows:
        print(f"{label:55} {ours:13,.1f} {theirs:10,.1f} {ours / theirs:7.2f}")
    if args.enqueue_only:
        return
    inproc = best(rounds, lambda p: anyio.run(aw_inprocess, p, n))
    bare = max(anyio.run(bare_runtime, n) for _ in range(rounds))
    print(f"{'in-process Manager, concurrency 10 (jobs/s)':55} {inproc:13,.1f}")
    print(f"{'bare Runtime, no store (jobs/s)':55} {bare:13,.1f}")


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
