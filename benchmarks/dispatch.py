"""dispatch() next to its peers, side by side in one run.

1. Closed model, trivial coroutine tasks (``await asyncio.sleep(0)``), 16 in flight: a
   hand-written loop (16 coroutines over one iterator: the floor), ``Runtime.map`` with a
   window of 16 (the runtime alone), and ``aw.dispatch`` with and without per-task logs.
   The difference to ``Runtime.map`` is what dispatch adds per task (timing, log, counts).
2. Closed model, a trivial plain function in 8 threads: ``ThreadPoolExecutor(8).map``,
   worker-dispatcher 1.4.0 (``worker.number=8``), ``aw.dispatch(workers=8)`` and the compat
   module's ``start()`` with the same config.
3. The TPS report of the same logs (20,000 tasks over 60 s, busy and quiet stretches):
   worker-dispatcher's
   ``get_tps()`` (rescans every log for every window it tries), the compat module's
   ``get_tps()`` (the same figures, sorted counts), and ``Report.tps()`` (a timeline).
4. Open model: dispatch at a target rate for a fixed time with trivial tasks; the achieved
   rate, the late starts and the start lag (started_at - intended_at) p50/p99.

Run: ``python benchmarks/dispatch.py [--quick]``. Best of 3 repeats for throughput; figures
compare peers within one run, never across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import math
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import uvloop
import worker_dispatcher.worker_dispatcher as real_wd
from rich.console import Console
from rich.table import Table

import asyncworkers as aw
from asyncworkers.compat import worker_dispatcher as compat_wd

IN_FLIGHT = 16
THREADS = 8
REPEAT = 3


async def tick(task_id: int, config: Any, task: Any, metadata: dict[str, Any]) -> int:
    await asyncio.sleep(0)
    return task_id


async def plain_tick(i: int) -> int:
    await asyncio.sleep(0)
    return i


def work(id: int, config: Any = None, task: Any = None, metadata: Any = None) -> int:
    return id


# -- 1. closed model, coroutines -----------------------------------------------------------


async def hand_loop(n: int) -> None:
    items = iter(range(n))

    async def worker() -> None:
        for i in items:
            await plain_tick(i)

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


async def runtime_map(n: int) -> None:
    async with aw.Runtime(IN_FLIGHT) as rt:
        async for _ in rt.map(plain_tick, range(n), window=IN_FLIGHT):
            pass


def dispatch_peer(record: bool) -> Callable[[int], Awaitable[None]]:
    async def run(n: int) -> None:
        report = await aw.dispatch(tick, n, workers=IN_FLIGHT, record=record)
        assert report.succeeded == n

    return run


def best_rate(run: Callable[[int], Awaitable[None]], n: int) -> float:
    best = float("inf")
    for _ in range(REPEAT):
        started = time.perf_counter()
        uvloop.run(run(n))
        best = min(best, time.perf_counter() - started)
    return n / best


# -- 2. closed model, threads --------------------------------------------------------------


def thread_pool(n: int) -> None:
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(work, range(1, n + 1)))


def wd_config(n: int) -> dict[str, Any]:
    return {"task": {"list": n, "function": work}, "worker": {"number": THREADS}, "verbose": False}


def real_worker_dispatcher(n: int) -> None:
    assert len(real_wd.start(wd_config(n))) == n


def compat_worker_dispatcher(n: int) -> None:
    assert len(compat_wd.start(wd_config(n))) == n  # type: ignore[arg-type]


def dispatch_threads(n: int) -> None:
    assert aw.dispatch_sync(work, n, workers=THREADS, record=False).succeeded == n


def best_sync_rate(run: Callable[[int], None], n: int) -> float:
    best = float("inf")
    for _ in range(REPEAT):
        started = time.perf_counter()
        run(n)
        best = min(best, time.perf_counter() - started)
    return n / best


# -- 3. TPS report -------------------------------------------------------------------------


def synthetic_logs(n: int, seconds: float) -> list[dict[str, Any]]:
    """*n* logs over *seconds*, the rate rising and falling (a load test's shape)."""
    rng = random.Random(7)
    begin = 1_700_000_000.25
    logs = []
    for i in range(n):
        # Rejection sampling of a rate shaped 1 + sin: busy and quiet stretches.
        while True:
            offset = rng.random() * seconds
            if rng.random() * 2 < 1 + math.sin(offset / seconds * 4 * math.pi):
                break
        duration = rng.expovariate(20)  # 50 ms on average
        logs.append(
            {
                "task_id": i + 1,
                "started_at": begin + offset,
                "ended_at": begin + offset + duration,
                "duration": duration,
                "result": rng.random() > 0.05,
                "metadata": {},
            }
        )
    return logs


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        value = fn()
    return time.perf_counter() - started, value


# -- 4. open model -------------------------------------------------------------------------


async def open_model(rate: float, seconds: float) -> tuple[aw.Report, list[float]]:
    lags: list[float] = []

    def lag(task_id: int, config: Any, result: Any, log: aw.TaskLog) -> Any:
        assert log.started_at is not None
        assert log.intended_at is not None
        lags.append(log.started_at - log.intended_at)
        return result

    report = await aw.dispatch(
        tick, int(rate * seconds), rate=rate, workers=256, record=False, on_done=lag
    )
    return report, lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    args = parser.parse_args()
    n = 20_000 if args.quick else 100_000
    console = Console()

    table = Table(title=f"1. closed model, {n:,} coroutine tasks, {IN_FLIGHT} in flight (uvloop)")
    for heading in ("peer", "tasks/s", "us/task", "vs hand loop"):
        table.add_column(heading, justify="right" if heading != "peer" else "left")
    peers: list[tuple[str, Callable[[int], Awaitable[None]]]] = [
        ("hand-written loop", hand_loop),
        ("Runtime.map", runtime_map),
        ("dispatch(record=True)", dispatch_peer(True)),
        ("dispatch(record=False)", dispatch_peer(False)),
    ]
    rates = {name: best_rate(run, n) for name, run in peers}
    for name, rate in rates.items():
        ratio = rate / rates["hand-written loop"]
        table.add_row(name, f"{rate:,.0f}", f"{1e6 / rate:.2f}", f"{ratio:.3f}")
    console.print(table)

    m = n // 5
    table = Table(title=f"2. closed model, {m:,} plain tasks, {THREADS} threads")
    for heading in ("peer", "tasks/s", "vs worker-dispatcher"):
        table.add_column(heading, justify="right" if heading != "peer" else "left")
    sync_peers: list[tuple[str, Callable[[int], None]]] = [
        ("ThreadPoolExecutor.map", thread_pool),
        ("worker-dispatcher 1.4.0", real_worker_dispatcher),
        ("compat.worker_dispatcher", compat_worker_dispatcher),
        ("dispatch_sync(record=False)", dispatch_threads),
    ]
    sync_rates = {name: best_sync_rate(run, m) for name, run in sync_peers}
    for name, rate in sync_rates.items():
        ratio = rate / sync_rates["worker-dispatcher 1.4.0"]
        table.add_row(name, f"{rate:,.0f}", f"{ratio:.2f}")
    console.print(table)

    count, span = (5_000, 30.0) if args.quick else (20_000, 60.0)
    logs = synthetic_logs(count, span)
    table = Table(title=f"3. TPS report of {count:,} logs over {span:g} s")
    for heading in ("peer", "seconds", "tps", "peak tps"):
        table.add_column(heading, justify="right" if heading != "peer" else "left")
    real_s, real = timed(lambda: real_wd.get_tps(logs=logs))
    ours_s, ours = timed(lambda: compat_wd.get_tps(logs=logs))
    table.add_row("worker-dispatcher get_tps", f"{real_s:.3f}", str(real["tps"]),
                  str(real["peak"].get("tps")))  # fmt: skip
    table.add_row("compat get_tps", f"{ours_s:.3f}", str(ours["tps"]),
                  str(ours["peak"].get("tps")))  # fmt: skip
    console.print(table)
    console.print(f"same report: {real == ours}; speed-up {real_s / ours_s:.1f}x")

    seconds = 1.0 if args.quick else 3.0
    table = Table(title=f"4. open model, trivial tasks for {seconds:g} s (uvloop)")
    for heading in ("target/s", "achieved/s", "achieved/target", "late", "lag p50 ms",
                    "lag p99 ms"):  # fmt: skip
        table.add_column(heading, justify="right")
    for rate in (1_000, 10_000, 30_000):
        report, lags = uvloop.run(open_model(rate, seconds))
        achieved = report.completed / report.duration
        cuts = statistics.quantiles(lags, n=100)
        p50, p99 = cuts[49] * 1e3, cuts[98] * 1e3
        table.add_row(f"{rate:,}", f"{achieved:,.0f}", f"{achieved / rate:.3f}",
                      str(report.late_starts), f"{p50:.2f}", f"{p99:.2f}")  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
