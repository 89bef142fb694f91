"""Instructions per job, counted by callgrind: the cost figure that does not move with load.

Wall-clock rates (``benchmarks/inproc.py``) swing with whatever else the machine runs;
instruction counts do not. Every path below runs in a child process under
``valgrind --tool=callgrind``, once with a small and once with a large job count, and the
difference of the two totals divided by the difference of the counts is its cost per job:
interpreter start-up, imports, loop and runtime set-up and shutdown cancel out. The garbage
collector's walks over live handles stay in, as they do in a real run. Each child has
``PYTHONHASHSEED=0``, so two runs of one path agree to a few instructions per job.

Paths (the trivial job is ``async def noop(i): return i``, or ``def plain_noop(i)``):

- ``bare``: an ``asyncio.Queue`` of the jobs' ints drained by 8 worker coroutines doing
  ``await q.get()`` then ``await noop(i)``; no handles, no results: the floor every ratio is
  taken against (the issue's 7,805).
- ``bare-fn``: the same queue carrying ``(fn, args)`` tuples, called as ``fn(*args)``, as in
  ``benchmarks/inproc.py``: what carrying the function costs (two tuples and a
  ``CALL_FUNCTION_EX`` per job).
- ``taskgroup``: ``asyncio.TaskGroup``, one task per job, each awaited.
- ``aiojobs``: aiojobs ``Scheduler(limit=None)``, ``spawn`` every job, then ``wait()``.
- ``plain``: asyncworkers ``Runtime(workers=8)``, ``submit_nowait(noop, i,
  priority=i % 5)`` for every job, then ``await job`` for each.
- ``plain-ops``: ``plain`` with the operations endpoint on (``aw.ops.serve``: the
  metrics' ``on_complete`` hook, the loop probe and listener threads, the watchdog).
- ``timeout``, ``token``: the same with ``timeout=60.0``, or with one shared
  ``CancellationToken`` (the paths that pay for a cancel scope).
- ``thread``: the same with ``plain_noop`` (a thread job, via anyio's worker threads).
- ``sync``: ``SyncRuntime(workers=8)``, ``submit(noop, i).result()`` one after the other
  from the main thread (the round trip of a sync caller).
- ``executor``: ``ThreadPoolExecutor(8)``, ``submit(plain_noop, i).result()`` one after the
  other: the peer of the ``sync`` round trip.

Run: ``python benchmarks/icount.py [--max-ratio 2.5] [--only NAME ...] [--profile PATH]
[--loop uvloop|asyncio] [--jobs SMALL LARGE] [--parallel N] [--json PATH]``. It prints the
table and exits 1 when the ``plain`` path costs more than ``--max-ratio`` times ``bare``.
``--profile PATH`` keeps the callgrind output of the large ``plain`` run, for
``callgrind_annotate [--inclusive=yes] PATH``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

CONSUMERS = 8
LEVELS = 5  # priorities 0..4, mixed as i % 5
TIMEOUT = 60.0  # never fires: the timeout path pays for the scope, not for a timeout


async def noop(i: int) -> int:
    return i


def plain_noop(i: int) -> int:
    return i


# -- the workloads, run in the child process --------------------------------------------------
# Each imports what it needs itself, so a child loads only its own peer. The asyncworkers
# paths are spelled out one by one on purpose: a shared helper taking ``**options`` would
# add a dict merge to every submit (about 1,500 instructions, 6% of the plain path).


async def bare(n: int) -> None:
    queue: asyncio.Queue[int | None] = asyncio.Queue()

    async def worker() -> None:
        get = queue.get
        while (item := await get()) is not None:
            await noop(item)

    workers = [asyncio.create_task(worker()) for _ in range(CONSUMERS)]
    put = queue.put_nowait
    for i in range(n):
        put(i)
    for _ in workers:
        put(None)
    await asyncio.gather(*workers)


async def bare_fn(n: int) -> None:
    queue: asyncio.Queue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = asyncio.Queue()

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


async def taskgroup(n: int) -> None:
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(noop(i)) for i in range(n)]
        for task in tasks:
            await task


async def aiojobs_peer(n: int) -> None:
    import aiojobs

    async with aiojobs.Scheduler(limit=None, pending_limit=0) as scheduler:
        spawn = scheduler.spawn
        jobs = [await spawn(noop(i)) for i in range(n)]
        for job in jobs:
            await job.wait()


async def plain(n: int) -> None:
    import asyncworkers as aw

    async with aw.Runtime(CONSUMERS) as rt:
        submit = rt.submit_nowait
        jobs = [submit(noop, i, priority=i % LEVELS) for i in range(n)]
        for job in jobs:
            await job


async def plain_ops(n: int) -> None:
    import asyncworkers as aw

    options = aw.ops.Options(stuck_after=3600.0)  # the watchdog looks, never finds
    async with aw.Runtime(CONSUMERS) as rt, aw.ops.serve(rt, "127.0.0.1", 0, options):
        submit = rt.submit_nowait
        jobs = [submit(noop, i, priority=i % LEVELS) for i in range(n)]
        for job in jobs:
            await job


async def with_timeout(n: int) -> None:
    import asyncworkers as aw

    async with aw.Runtime(CONSUMERS) as rt:
        submit = rt.submit_nowait
        jobs = [submit(noop, i, priority=i % LEVELS, timeout=TIMEOUT) for i in range(n)]
        for job in jobs:
            await job


async def with_token(n: int) -> None:
    import asyncworkers as aw

    token = aw.CancellationToken()
    async with aw.Runtime(CONSUMERS) as rt:
        submit = rt.submit_nowait
        jobs = [submit(noop, i, priority=i % LEVELS, token=token) for i in range(n)]
        for job in jobs:
            await job


async def thread(n: int) -> None:
    import asyncworkers as aw

    async with aw.Runtime(CONSUMERS) as rt:
        submit = rt.submit_nowait
        jobs = [submit(plain_noop, i, priority=i % LEVELS) for i in range(n)]
        for job in jobs:
            await job


def sync_round_trip(n: int, use_uvloop: bool) -> None:
    import asyncworkers as aw

    with aw.SyncRuntime(CONSUMERS, use_uvloop=use_uvloop) as rt:
        submit = rt.submit
        for i in range(n):
            submit(noop, i).result()


def executor_round_trip(n: int, use_uvloop: bool) -> None:
    with ThreadPoolExecutor(CONSUMERS) as pool:
        submit = pool.submit
        for i in range(n):
            submit(plain_noop, i).result()


@dataclass(frozen=True)
class Path:
    name: str
    label: str
    # A coroutine function awaited as run(n) on the chosen loop, or (on_loop False) a
    # function called as run(n, use_uvloop) from the main thread.
    run: Callable[..., Any]
    on_loop: bool = True
    share: int = 1  # the job counts are divided by this: a thread hop costs ~10x a plain job
    imports: tuple[str, ...] = ()  # what the run imports, imported before it starts


AW = ("asyncworkers",)


def _paths(*paths: Path) -> dict[str, Path]:
    return {path.name: path for path in paths}


PATHS = _paths(
    Path("bare", "asyncio.Queue of ints, 8 workers: await q.get(), await noop(i)", bare),
    Path("bare-fn", "asyncio.Queue of (fn, args) tuples, as in inproc.py", bare_fn),
    Path("taskgroup", "asyncio.TaskGroup, a task per job", taskgroup),
    Path(
        "aiojobs",
        "aiojobs Scheduler(limit=None), spawn then wait",
        aiojobs_peer,
        imports=("aiojobs",),
    ),
    Path(
        "plain",
        "asyncworkers Runtime(8), submit_nowait(priority=i % 5), await",
        plain,
        imports=AW,
    ),
    Path(
        "plain-ops",
        "asyncworkers, plain + aw.ops.serve (metrics hook, loop probe, watchdog)",
        plain_ops,
        imports=(*AW, "aiohttp.web", "prometheus_client", "asyncworkers.ops._server"),
    ),
    Path("timeout", "asyncworkers, plain + timeout=60", with_timeout, imports=AW),
    Path("token", "asyncworkers, plain + token= (one shared token)", with_token, imports=AW),
    Path(
        "thread",
        "asyncworkers, a plain function (thread job)",
        thread,
        share=10,
        imports=AW,
    ),
    Path(
        "sync",
        "asyncworkers SyncRuntime(8), submit(noop).result() in turn",
        sync_round_trip,
        on_loop=False,
        share=10,
        imports=AW,
    ),
    Path(
        "executor",
        "ThreadPoolExecutor(8), submit(plain).result() in turn",
        executor_round_trip,
        on_loop=False,
        share=10,
    ),
)
BASELINE = "bare"
CHECKED = "plain"


def child(name: str, n: int, loop: str) -> None:
    """The child's whole life: run *n* jobs through one path, print nothing."""
    path = PATHS[name]
    use_uvloop = loop == "uvloop"
    # Every run starts from the same collector state: what the imports left is collected
    # now, not by a full collection that would fall inside the large run only (it once
    # charged ~1,500 instructions to every job of a path whose package grew by a module).
    for module in path.imports:
        importlib.import_module(module)
    gc.collect()
    if not path.on_loop:
        path.run(n, use_uvloop)
        return
    if use_uvloop:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(path.run(n))


# -- the parent: callgrind runs, subtraction, table -------------------------------------------

_TOTALS = re.compile(rb"^(?:totals|summary):\s+(\d+)", re.MULTILINE)


def total_instructions(out_file: str) -> int:
    """The Ir total of a callgrind output file (its ``totals:`` or ``summary:`` line)."""
    with open(out_file, "rb") as f:
        found = _TOTALS.findall(f.read())
    if not found:
        raise RuntimeError(f"no totals: or summary: line in {out_file}")
    return int(found[-1])


@dataclass
class Count:
    name: str
    small: int  # jobs
    large: int
    small_ir: int = 0
    large_ir: int = 0
    seconds: float = 0.0  # wall-clock of both callgrind runs

    @property
    def per_job(self) -> float:
        return (self.large_ir - self.small_ir) / (self.large - self.small)


def callgrind(name: str, n: int, loop: str, out_file: str) -> int:
    """Run one child under callgrind; its total instruction count."""
    cmd = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out_file}",
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        name,
        str(n),
        "--loop",
        loop,
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{name} with {n} jobs exited with {done.returncode}:\n{done.stderr[-3000:]}"
        )
    return total_instructions(out_file)


def measure(count: Count, loop: str, workdir: str, profile: str | None) -> Count:
    start = time.perf_counter()
    for n in (count.small, count.large):
        out_file = os.path.join(workdir, f"callgrind.{count.name}.{n}")
        ir = callgrind(count.name, n, loop, out_file)
        if n == count.small:
            count.small_ir = ir
        else:
            count.large_ir = ir
            if profile is not None and count.name == CHECKED:
                shutil.copyfile(out_file, profile)
        os.unlink(out_file)
    count.seconds = time.perf_counter() - start
    return count


def render(counts: list[Count], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    by_name = {c.name: c for c in counts}
    base = by_name.get(BASELINE)
    table = Table(
        title=f"instructions per job under callgrind ({args.loop}, Python "
        f"{platform.python_version()}; large run minus small run)"
    )
    for column in ("path", "what runs", "jobs", "instr/job", f"vs {BASELINE}", "time"):
        table.add_column(column, justify="left" if column in ("path", "what runs") else "right")
    for c in counts:
        ratio = f"{c.per_job / base.per_job:.2f}x" if base is not None else "-"
        table.add_row(
            c.name,
            PATHS[c.name].label,
            f"{c.large:,} - {c.small:,}",
            f"{c.per_job:,.0f}",
            ratio,
            f"{c.seconds:.0f} s",
        )
    Console(width=max(Console().width, 120)).print(table)


def dump(counts: list[Count], args: argparse.Namespace) -> None:
    data = {
        "loop": args.loop,
        "python": platform.python_version(),
        "paths": {
            c.name: {
                "label": PATHS[c.name].label,
                "jobs": [c.small, c.large],
                "instructions": [c.small_ir, c.large_ir],
                "per_job": c.per_job,
            }
            for c in counts
        },
    }
    with open(args.json, "w") as f:
        json.dump(data, f, indent=2)


def check(counts: list[Count], max_ratio: float) -> bool:
    by_name = {c.name: c for c in counts}
    ratio = by_name[CHECKED].per_job / by_name[BASELINE].per_job
    ok = ratio <= max_ratio
    print(
        f"{'PASS' if ok else 'FAIL'}  {CHECKED} path: {ratio:.2f}x the {BASELINE} queue's "
        f"instructions per job (at most {max_ratio}x allowed)"
    )
    return ok


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:  # NaN too
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument(
        "--jobs",
        nargs=2,
        type=positive_int,
        default=[1000, 20_000],
        metavar=("SMALL", "LARGE"),
        help="job counts of the two runs (default 1000 20000; thread, sync and executor "
        "paths run a tenth of them)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(PATHS),
        metavar="NAME",
        help=f"run only this path (repeatable): {', '.join(PATHS)}",
    )
    parser.add_argument(
        "--max-ratio",
        type=positive_float,
        metavar="X",
        help=f"exit 1 when the {CHECKED} path costs more than X times {BASELINE}",
    )
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help=f"keep the callgrind output of the large {CHECKED} run at PATH",
    )
    parser.add_argument(
        "--parallel", type=positive_int, default=2, help="callgrind runs at once (default 2)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    parser.add_argument("--child", nargs=2, metavar=("NAME", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return args
    small, large = args.jobs
    if large < small + 10:  # the thread paths run a tenth: those counts must differ too
        parser.error(f"--jobs: LARGE must be at least SMALL + 10, got {small} {large}")
    names = args.only or list(PATHS)
    if args.max_ratio is not None and not {BASELINE, CHECKED} <= set(names):
        parser.error(f"--max-ratio needs the {BASELINE} and {CHECKED} paths (see --only)")
    if args.profile is not None and CHECKED not in names:
        parser.error(f"--profile keeps the {CHECKED} path's output: add --only {CHECKED}")
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    args.names = list(dict.fromkeys(names))
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        name, n = args.child
        child(name, int(n), args.loop)
        return
    small, large = args.jobs
    counts = [
        Count(name, max(1, small // PATHS[name].share), large // PATHS[name].share)
        for name in args.names
    ]
    print(
        f"python {platform.python_version()}, loop {args.loop}, {len(counts)} paths, "
        f"{args.parallel} callgrind runs at once",
        flush=True,
    )
    start = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="icount-") as workdir,
        ThreadPoolExecutor(args.parallel) as pool,
    ):
        futures = [pool.submit(measure, c, args.loop, workdir, args.profile) for c in counts]
        for future in futures:
            try:
                c = future.result()
            except RuntimeError as error:  # a child failed: its stderr says why
                sys.exit(f"icount: {error}")
            print(f"  {c.name:<10} {c.per_job:>10,.0f} instr/job  ({c.seconds:.0f} s)", flush=True)
    print(f"measured in {time.perf_counter() - start:.0f} s")
    render(counts, args)
    if args.json:
        dump(counts, args)
    if args.max_ratio is not None and not check(counts, args.max_ratio):
        sys.exit(1)


if __name__ == "__main__":
    main()
