"""In-process cost of asyncworkers next to its peers, side by side in one run.

Three things are measured, because they are what a task runtime adds on top of "call the
coroutine":

1. Throughput of trivial jobs (``async def noop(i): return i``): every job is submitted
   first, then every job is awaited, with 8 consumers where the peer has a notion of
   consumers. Peers: a bare ``asyncio.Queue`` drained by 8 worker coroutines (no handles:
   the floor), ``asyncio.TaskGroup`` (a task per job), aiojobs (limit=8 and limit=None),
   an anyio task group (a task per job, concurrency bounded by ``CapacityLimiter(8)``),
   ``ThreadPoolExecutor(8)`` (a plain function per job) and asyncworkers
   (``Runtime(8)``, ``submit_nowait(noop, i, priority=i % 5)``, then ``await job``).
   Peer order is shuffled on every repeat and the best (highest jobs/s) repeat is kept.
   The garbage collector runs normally; ``gc.collect()`` runs between peers.
2. Memory held per pending job, by tracemalloc: everything allocated by the submit call is
   counted (handle, args tuple, id, timestamps, queue slot), the argument objects themselves
   are made before tracing starts.
3. Idle wake latency: all workers idle, one job submitted; the time from just before the
   submit to the first line of the job's body, p50 and p99 over ~2000 round trips.

Run: ``python benchmarks/inproc.py [--jobs N] [--loop uvloop|asyncio] [--repeat R]
[--json PATH]``. Timings are for comparing peers within one run, never absolute.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import random
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import aiojobs
import anyio
from rich.console import Console
from rich.table import Table

import asyncworkers as aw

CONSUMERS = 8
LEVELS = 5  # priorities 0..4, mixed as i % 5 where the peer has priorities

# Targets, from the brief.
MIN_VS_BARE = 0.25
MIN_VS_AIOJOBS = 5.0
MAX_BYTES_PER_JOB = 400
MAX_WAKE_RATIO = 2.0


async def noop(i: int) -> int:
    return i


def plain_noop(i: int) -> int:
    return i


# -- throughput peers: each runs n jobs to completion -----------------------------------------


async def bare_queue(n: int) -> None:
    """8 workers doing ``await q.get()`` and awaiting the job; no handles, no results."""
    queue: asyncio.Queue[tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]] | None]
    queue = asyncio.Queue()

    async def worker() -> None:
        get = queue.get
        while (item := await get()) is not None:
            fn, args = item
            await fn(*args)

    workers = [asyncio.create_task(worker()) for _ in range(CONSUMERS)]
    put = queue.put_nowait
    for i in range(n):
        put((noop, (i,)))
    for _ in workers:
        put(None)
    await asyncio.gather(*workers)


async def task_group(n: int) -> None:
    """One asyncio task per job (unbounded concurrency), each awaited."""
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(noop(i)) for i in range(n)]
        for task in tasks:
            await task


def aiojobs_peer(limit: int | None) -> Callable[[int], Awaitable[None]]:
    async def run(n: int) -> None:
        async with aiojobs.Scheduler(limit=limit, pending_limit=0) as scheduler:
            spawn = scheduler.spawn
            jobs = [await spawn(noop(i)) for i in range(n)]
            for job in jobs:
                await job.wait()

    return run


async def anyio_group(n: int) -> None:
    """anyio start_soon per job, at most 8 running (CapacityLimiter(8)); no handles."""
    limiter = anyio.CapacityLimiter(CONSUMERS)

    async def one(i: int) -> None:
        async with limiter:
            await noop(i)

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)


async def thread_pool(n: int) -> None:
    """ThreadPoolExecutor(8).submit of a plain function per job, then result() of each."""
    with ThreadPoolExecutor(CONSUMERS) as pool:
        futures = [pool.submit(plain_noop, i) for i in range(n)]
        for future in futures:
            future.result()


async def asyncworkers_peer(n: int) -> None:
    async with aw.Runtime(CONSUMERS) as rt:
        submit = rt.submit_nowait
        jobs = [submit(noop, i, priority=i % LEVELS) for i in range(n)]
        for job in jobs:
            await job


@dataclass
class Peer:
    name: str
    run: Callable[[int], Awaitable[None]]
    share: float  # fraction of --jobs this peer runs: slow peers get fewer, to fit the budget
    note: str
    best: float = 0.0  # jobs/s
    jobs: int = 0


def make_peers() -> list[Peer]:
    return [
        Peer("bare asyncio.Queue", bare_queue, 1.0, "8 workers, (fn, args) tuples, no handles"),
        # The targets compare with these at the same job count: live handles cost GC time.
        Peer("asyncio.TaskGroup", task_group, 1.0, "task per job, unbounded"),
        Peer("aiojobs limit=8", aiojobs_peer(CONSUMERS), 1.0, "spawn, then job.wait()"),
        Peer("aiojobs limit=None", aiojobs_peer(None), 1.0, "spawn, then job.wait()"),
        Peer("anyio start_soon", anyio_group, 0.05, "task per job, CapacityLimiter(8)"),
        Peer("ThreadPoolExecutor(8)", thread_pool, 0.1, "plain fn, submit then result()"),
        Peer("asyncworkers", asyncworkers_peer, 1.0, "Runtime(8), priority=i % 5, await job"),
    ]


async def time_peer(peer: Peer, n: int) -> float:
    gc.collect()
    start = time.perf_counter()
    await peer.run(n)
    return n / (time.perf_counter() - start)


# -- memory per pending job ---------------------------------------------------------------------


async def traced(fill: Callable[[list[int]], Awaitable[Any]], n: int) -> tuple[float, Any]:
    """Bytes allocated (and still held) by ``fill(values)``, per value."""
    values = list(range(1_000_000, 1_000_000 + n))  # argument objects exist before tracing
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        keep = await fill(values)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / n, keep


async def memory_asyncworkers(n: int) -> tuple[float, dict[str, int]]:
    async with aw.Runtime(CONSUMERS) as rt:
        rt.pause()
        for level in range(LEVELS):  # warm: the options cache and one deque per level
            rt.submit_nowait(noop, level, priority=level)

        async def fill(values: list[int]) -> None:
            submit = rt.submit_nowait
            for x in values:
                submit(noop, x, priority=x % LEVELS)

        per_job, _ = await traced(fill, n)
        sample = rt.submit_nowait(noop, 10**9)
        parts = {
            "Job": sys.getsizeof(sample),
            "args tuple": sys.getsizeof(sample.args),
            "id int": sys.getsizeof(sample.id),
            "queued_at float": sys.getsizeof(sample.queued_at),
        }
        await rt.shutdown(cancel_pending=True)
    return per_job, parts


async def memory_bare_queue(n: int) -> float:
    async def fill(values: list[int]) -> asyncio.Queue[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for x in values:
            queue.put_nowait((noop, (x,)))
        return queue

    per_job, _ = await traced(fill, n)
    return per_job


async def memory_futures(n: int) -> float:
    loop = asyncio.get_running_loop()

    async def fill(values: list[int]) -> list[Any]:
        return [(noop, (x,), loop.create_future()) for x in values]

    per_job, _ = await traced(fill, n)
    return per_job


# -- idle wake latency ------------------------------------------------------------------------


async def stamp() -> float:
    return time.perf_counter()


async def stamp_into(future: asyncio.Future[float]) -> None:
    future.set_result(time.perf_counter())


async def wake_asyncworkers(samples: int) -> list[float]:
    out = []
    async with aw.Runtime(CONSUMERS) as rt:
        await asyncio.sleep(0.01)  # every worker parked
        for _ in range(samples):
            start = time.perf_counter()
            job = rt.submit_nowait(stamp)
            out.append(await job - start)
            await asyncio.sleep(0)
    return out


async def wake_bare_queue(samples: int) -> list[float]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            fn, args = item
            await fn(*args)

    workers = [asyncio.create_task(worker()) for _ in range(CONSUMERS)]
    await asyncio.sleep(0.01)
    out = []
    for _ in range(samples):
        start = time.perf_counter()
        future = loop.create_future()  # the handle, made inside the timing as submit does
        queue.put_nowait((stamp_into, (future,)))
        out.append(await future - start)
        await asyncio.sleep(0)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return out


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Results:
    peers: list[Peer]
    memory: dict[str, float]
    parts: dict[str, int]
    wake: dict[str, list[float]]

    def rate(self, name: str) -> float:
        return next(p.best for p in self.peers if p.name == name)


async def measure(args: argparse.Namespace, console: Console) -> Results:
    rng = random.Random(args.seed)
    peers = make_peers()
    wake: dict[str, list[float]] = {"bare asyncio.Queue": [], "asyncworkers": []}
    wakers = [("bare asyncio.Queue", wake_bare_queue), ("asyncworkers", wake_asyncworkers)]
    per_repeat = max(1, args.wake_samples // args.repeat)
    for repeat in range(args.repeat):
        order = peers[:]
        rng.shuffle(order)
        for peer in order:
            peer.jobs = max(1000, int(args.jobs * peer.share))
            rate = await time_peer(peer, peer.jobs)
            peer.best = max(peer.best, rate)
            console.log(f"repeat {repeat + 1}/{args.repeat}  {peer.name:<22} {rate:>12,.0f} jobs/s")
        for name, waker in rng.sample(wakers, len(wakers)):
            gc.collect()
            wake[name] += await waker(per_repeat)
    gc.collect()
    aw_bytes, parts = await memory_asyncworkers(args.mem_jobs)
    gc.collect()
    memory = {
        "asyncworkers": aw_bytes,
        "bare asyncio.Queue": await memory_bare_queue(args.mem_jobs),
        "list of (fn, args, Future)": await memory_futures(args.mem_jobs),
    }
    return Results(peers, memory, parts, wake)


def checks(res: Results) -> list[tuple[str, float, str, bool]]:
    awr = res.rate("asyncworkers")
    vs_bare = awr / res.rate("bare asyncio.Queue")
    vs_aiojobs = awr / res.rate("aiojobs limit=8")
    wake_ratio = percentile(res.wake["asyncworkers"], 0.5) / percentile(
        res.wake["bare asyncio.Queue"], 0.5
    )
    mem = res.memory["asyncworkers"]
    return [
        ("throughput vs bare queue", vs_bare, f">= {MIN_VS_BARE}x", vs_bare >= MIN_VS_BARE),
        (
            "throughput vs aiojobs limit=8",
            vs_aiojobs,
            f">= {MIN_VS_AIOJOBS}x",
            vs_aiojobs >= MIN_VS_AIOJOBS,
        ),
        ("bytes per pending job", mem, f"<= {MAX_BYTES_PER_JOB} B", mem <= MAX_BYTES_PER_JOB),
        (
            "idle wake p50 vs bare queue",
            wake_ratio,
            f"<= {MAX_WAKE_RATIO}x",
            wake_ratio <= MAX_WAKE_RATIO,
        ),
    ]


def render(res: Results, args: argparse.Namespace, console: Console) -> None:
    table = Table(title=f"asyncworkers in-process benchmark ({args.loop}, best of {args.repeat})")
    for column in ("measure", "peer", "value", "vs asyncworkers", "note"):
        table.add_column(
            column, justify="right" if column in ("value", "vs asyncworkers") else "left"
        )
    awr = res.rate("asyncworkers")
    for peer in sorted(res.peers, key=lambda p: -p.best):
        table.add_row(
            "jobs/s",
            peer.name,
            f"{peer.best:,.0f}",
            f"{awr / peer.best:.2f}x",
            f"{peer.note}; {peer.jobs:,} jobs",
        )
    table.add_section()
    aw_mem = res.memory["asyncworkers"]
    breakdown = ", ".join(f"{k} {v}" for k, v in res.parts.items())
    for name, value in res.memory.items():
        note = f"incl. args tuple; {breakdown}" if name == "asyncworkers" else "incl. args tuple"
        table.add_row("B/pending job", name, f"{value:,.0f}", f"{aw_mem / value:.2f}x", note)
    table.add_section()
    aw_p50 = percentile(res.wake["asyncworkers"], 0.5)
    for name, samples in res.wake.items():
        p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
        table.add_row(
            "idle wake p50",
            name,
            f"{p50 * 1e6:.1f} us",
            f"{aw_p50 / p50:.2f}x",
            f"p99 {p99 * 1e6:.1f} us, {len(samples)} samples",
        )
    table.add_section()
    for label, value, target, ok in checks(res):
        unit = " B" if "bytes" in label else "x"
        table.add_row("target", label, f"{value:.2f}{unit}", target, "PASS" if ok else "FAIL")
    console.print(table)
    for label, value, target, ok in checks(res):
        unit = " B" if "bytes" in label else "x"
        print(f"{'PASS' if ok else 'FAIL'}  {label}: {value:.2f}{unit} (target {target})")


def dump(res: Results, args: argparse.Namespace) -> None:
    data = {
        "loop": args.loop,
        "python": platform.python_version(),
        "repeat": args.repeat,
        "jobs_per_s": {p.name: {"best": p.best, "jobs": p.jobs} for p in res.peers},
        "bytes_per_pending_job": res.memory,
        "asyncworkers_object_sizes": res.parts,
        "idle_wake_us": {
            name: {
                "p50": percentile(s, 0.5) * 1e6,
                "p99": percentile(s, 0.99) * 1e6,
                "samples": len(s),
            }
            for name, s in res.wake.items()
        },
        "targets": {
            label: {"value": value, "target": target, "pass": ok}
            for label, value, target, ok in checks(res)
        },
    }
    with open(args.json, "w") as f:
        json.dump(data, f, indent=2)


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200_000, help="jobs per throughput run")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--repeat", type=int, default=3, help="repeats; the best is kept")
    parser.add_argument("--mem-jobs", type=int, default=100_000, help="pending jobs traced")
    parser.add_argument("--wake-samples", type=int, default=2000, help="idle wake round trips")
    parser.add_argument("--seed", type=int, default=None, help="seed of the peer order")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    return args


def main() -> None:
    args = parse_args()
    console = Console(width=max(Console().width, 130))  # the table needs the room
    console.log(f"python {platform.python_version()}, loop {args.loop}, seed {args.seed}")
    start = time.perf_counter()
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        res = runner.run(measure(args, console))
    console.log(f"measured in {time.perf_counter() - start:.0f} s")
    render(res, args, console)
    if args.json:
        dump(res, args)


if __name__ == "__main__":
    main()
