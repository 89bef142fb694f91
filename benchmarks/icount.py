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
- ``plain-imports``: ``plain`` with the modules the endpoint imports loaded and unused:
  what a larger heap costs through the garbage collector's full collections.
- ``plain-ops-jobs``: ``plain-ops`` with its time-driven work turned off (the loop
  probe's 4 Hz round trip, the 10 Hz bucketing of time samples, the chart's samples):
  what the endpoint costs per job, apart from what it costs per second.
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
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

CONSUMERS = 8
BASELINE_NAME = "bare"
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


async def plain_ops_jobs(n: int) -> None:
    """plain-ops without its time-driven work (loop probe, 10 Hz bucketing, chart samples):
    what the endpoint costs per job. The bucketing runs every 1,000 jobs instead."""
    import asyncworkers as aw
    from asyncworkers.ops import _dashboard, _probes, _server

    _probes.PROBE_INTERVAL = _server._INGEST_EVERY = _dashboard.SAMPLE_EVERY = 1e9
    options = aw.ops.Options(stuck_after=3600.0)
    async with aw.Runtime(CONSUMERS) as rt, aw.ops.serve(rt, "127.0.0.1", 0, options) as ops:
        assert ops.times is not None
        submit = rt.submit_nowait
        jobs = [submit(noop, i, priority=i % LEVELS) for i in range(n)]
        for i, job in enumerate(jobs):
            await job
            if i % 1000 == 999:
                ops.times.ingest()


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
    run: Callable[..., Any] | None
    on_loop: bool = True
    share: int = 1  # the job counts are divided by this: a thread hop costs ~10x a plain job
    imports: tuple[str, ...] = ()  # what the run imports, imported before it starts
    peer: str | None = BASELINE_NAME  # the row this one is compared with
    # A start-up path: the Python code run by ``python -c``, measured as one "job" against
    # ``python -c pass`` (interpreter start-up cancels out). Its wall clock is the median
    # of a few plain runs, less the bare interpreter's (or the whole command's: argv).
    code: str | None = None
    argv: tuple[str, ...] | None = None

    @property
    def startup(self) -> bool:
        return self.code is not None


# ``import asyncworkers`` loads the runtime's modules on first use: the imports list names
# them, so that their import garbage is collected before the run (see child()).
AW = ("asyncworkers", "asyncworkers._core._runtime", "asyncworkers._core._sync")


def _paths(*paths: Path) -> dict[str, Path]:
    return {path.name: path for path in paths}


PATHS = _paths(
    Path(
        "bare",
        "asyncio.Queue of ints, 8 workers: await q.get(), await noop(i)",
        bare,
        peer=None,
    ),
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
    Path(
        "plain-imports",
        "plain, with what the endpoint imports imported (a larger heap for the collector)",
        plain,
        imports=(*AW, "aiohttp.web", "prometheus_client", "asyncworkers.ops._server"),
    ),
    Path(
        "plain-ops-jobs",
        "plain-ops without its timers (probe, bucketing every 1,000 jobs)",
        plain_ops_jobs,
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
        peer="executor",
    ),
    Path(
        "sync",
        "asyncworkers SyncRuntime(8), submit(noop).result() in turn",
        sync_round_trip,
        on_loop=False,
        share=10,
        imports=AW,
        peer="executor",
    ),
    Path(
        "executor",
        "ThreadPoolExecutor(8), submit(plain).result() in turn",
        executor_round_trip,
        on_loop=False,
        share=10,
        peer=None,
    ),
    Path(
        "import",
        "import asyncworkers",
        None,
        code="import asyncworkers",
        peer="import-anyio",
    ),
    Path("import-anyio", "import anyio", None, code="import anyio", peer=None),
    Path(
        "import-runtime",
        "import asyncworkers, then aw.Runtime (what a program using it loads)",
        None,
        code="import asyncworkers; asyncworkers.Runtime",
        peer="import-anyio-run",
    ),
    Path(
        "import-anyio-run",
        "import anyio and its asyncio backend (what anyio.run loads)",
        None,
        code="import anyio, anyio._backends._asyncio",
        peer=None,
    ),
    Path(
        "cli-help",
        "asyncworkers --help (wall clock: the whole command)",
        None,
        code="import sys; from asyncworkers.cli import main; sys.argv[1:] = ['--help']; main()",
        argv=("asyncworkers", "--help"),
        peer=None,
    ),
)
BASELINE = BASELINE_NAME
CHECKED = "plain"


def child(name: str, n: int, loop: str, timed: bool) -> None:
    """The child's whole life: run *n* jobs through one path; print nothing, or (timed) the
    seconds the run took."""
    path = PATHS[name]
    assert path.run is not None
    use_uvloop = loop == "uvloop"
    # Every run starts from the same collector state: what the imports left is collected
    # now, not by a full collection that would fall inside the large run only (it once
    # charged ~1,500 instructions to every job of a path whose package grew by a module).
    for module in path.imports:
        importlib.import_module(module)
    gc.collect()
    start = time.perf_counter()
    if not path.on_loop:
        path.run(n, use_uvloop)
    else:
        if use_uvloop:
            import uvloop

            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        else:
            factory = asyncio.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(path.run(n))
    if timed:
        print(time.perf_counter() - start)


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
    wall: float = math.nan  # seconds per job (start-up paths: per command), without valgrind
    cpu: float = math.nan  # a start-up path's CPU seconds (user + system), beside its wall

    @property
    def per_job(self) -> float:
        return (self.large_ir - self.small_ir) / (self.large - self.small)


def child_command(name: str, n: int, loop: str, *, timed: bool = False) -> list[str]:
    """The command line of one run of *name* with *n* jobs (a start-up path: its code, or
    with n == 0 the bare interpreter)."""
    path = PATHS[name]
    if path.code is not None:
        return [sys.executable, "-c", path.code if n else "pass"]
    return [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        name,
        str(n),
        "--loop",
        loop,
        *(["--time"] if timed else []),
    ]


def run_child(cmd: list[str], what: str, *, cached: bool = False) -> str:
    """Run *cmd*; its output. *cached*: with bytecode caches written and read, as an
    installed package has them (this environment may set PYTHONDONTWRITEBYTECODE, and then
    every import would compile its module from source: a start-up path would count that)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if cached:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


def callgrind(name: str, n: int, loop: str, out_file: str) -> int:
    """Run one child under callgrind; its total instruction count."""
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}"]
    what = f"{name} with {n} jobs"
    startup = PATHS[name].startup
    if startup:  # once without valgrind first, to write the bytecode caches
        run_child(child_command(name, n, loop), what, cached=True)
    run_child([*cmd, *child_command(name, n, loop)], what, cached=startup)
    return total_instructions(out_file)


WALL_RUNS = 5  # plain runs per count for the wall clock; the best (job paths) or median


def wall_clock(count: Count, loop: str) -> float:
    """Seconds per job without valgrind (the best of a few runs per count, large minus
    small), or for a start-up path the median command time less the bare interpreter's
    (the whole command's, for a CLI path). It swings with the machine's load."""
    path = PATHS[count.name]
    if path.startup:

        def median_time(cmd: list[str]) -> float:
            times, cpu = [], []
            run_child(cmd, " ".join(cmd), cached=True)  # writes the bytecode caches
            for _ in range(WALL_RUNS):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                run_child(cmd, " ".join(cmd), cached=True)
                times.append(time.perf_counter() - start)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            cpu_times.append(statistics.median(cpu))
            return statistics.median(times)

        cpu_times: list[float] = []

        if path.argv is not None:
            script = shutil.which(path.argv[0], path=os.path.dirname(sys.executable))
            if script is None:
                raise RuntimeError(f"{path.argv[0]} is not installed beside {sys.executable}")
            wall = median_time([script, *path.argv[1:]])
            count.cpu = cpu_times[0]
            return wall
        bare = median_time(child_command(count.name, 0, loop))
        wall = median_time(child_command(count.name, 1, loop)) - bare
        count.cpu = cpu_times[1] - cpu_times[0]
        return wall
    best = {}
    for n in (count.small, count.large):
        cmd = child_command(count.name, n, loop, timed=True)
        best[n] = min(float(run_child(cmd, count.name)) for _ in range(WALL_RUNS))
    return (best[count.large] - best[count.small]) / (count.large - count.small)


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


COLUMNS = ("path", "what runs", "jobs", "instr/job", "vs peer", "wall clock")


def rows(counts: list[Count]) -> list[tuple[str, ...]]:
    """The table: each path with its instructions, beside its peer's, and its wall clock."""
    by_name = {c.name: c for c in counts}
    table: list[tuple[str, ...]] = []
    for c in counts:
        path = PATHS[c.name]
        peer = by_name.get(path.peer) if path.peer is not None else None
        versus = f"{c.per_job / peer.per_job:.2f}x {peer.name}" if peer is not None else "-"
        if math.isnan(c.wall):
            wall = "-"
        elif path.startup:
            wall = f"{c.wall * 1e3:.0f} ms (cpu {c.cpu * 1e3:.0f} ms)"
        else:
            wall = f"{c.wall * 1e6:.1f} us/job"
        jobs = "1 - 0" if path.startup else f"{c.large:,} - {c.small:,}"
        table.append((c.name, path.label, jobs, f"{c.per_job:,.0f}", versus, wall))
    return table


def title(args: argparse.Namespace) -> str:
    return (
        f"instructions per job under callgrind ({args.loop}, Python "
        f"{platform.python_version()}; large run minus small run; an import: its run minus "
        "a bare interpreter's)"
    )


def render(counts: list[Count], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title(args))
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("path", "what runs") else "right")
    for row in rows(counts):
        table.add_row(*row)
    Console(width=max(Console().width, 120)).print(table)


def markdown(counts: list[Count], args: argparse.Namespace) -> str:
    lines = [
        f"| {' | '.join(COLUMNS)} |",
        f"| {' | '.join('---' for _ in COLUMNS)} |",
        *(f"| {' | '.join(row)} |" for row in rows(counts)),
    ]
    return "\n".join(
        [
            f"Generated by `python benchmarks/icount.py --all` ({args.loop}, Python "
            f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}): instructions per job "
            "under callgrind (repeatable to 0.1%), each beside its peer; the wall clock swings "
            "2x with the machine's load.",
            "",
            *lines,
        ]
    )


# Where --all writes the table, between these markers.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE_FILES = ("README.md", os.path.join("docs", "benchmarks.md"))
BEGIN, END = "<!-- icount table: begin -->", "<!-- icount table: end -->"


def write_tables(text: str) -> None:
    for name in TABLE_FILES:
        file = os.path.join(ROOT, name)
        with open(file, encoding="utf-8") as f:
            content = f.read()
        head, found, rest = content.partition(BEGIN)
        _, found_end, tail = rest.partition(END)
        if not (found and found_end):
            raise RuntimeError(f"{file} has no {BEGIN} ... {END} markers for the table")
        with open(file, "w", encoding="utf-8") as f:
            f.write(f"{head}{BEGIN}\n{text}\n{END}{tail}")
        print(f"wrote the table into {name}")


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
    parser.add_argument(
        "--all",
        action="store_true",
        help="every path, and write the table into " + " and ".join(TABLE_FILES),
    )
    parser.add_argument(
        "--no-wall", action="store_true", help="skip the wall-clock runs (without valgrind)"
    )
    parser.add_argument("--child", nargs=2, metavar=("NAME", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--time", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return args
    if args.all and args.only:
        parser.error("--all runs every path: leave out --only")
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
        child(name, int(n), args.loop, args.time)
        return
    small, large = args.jobs
    counts = [
        Count(name, 0, 1)  # a start-up path: its run and a bare interpreter's
        if PATHS[name].startup
        else Count(name, max(1, small // PATHS[name].share), large // PATHS[name].share)
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
    if not args.no_wall:  # one run at a time, after callgrind, so that nothing else runs
        for c in counts:
            try:
                c.wall = wall_clock(c, args.loop)
            except RuntimeError as error:
                sys.exit(f"icount: {error}")
    print(f"measured in {time.perf_counter() - start:.0f} s")
    render(counts, args)
    if args.all:
        write_tables(markdown(counts, args))
    if args.json:
        dump(counts, args)
    if args.max_ratio is not None and not check(counts, args.max_ratio):
        sys.exit(1)


if __name__ == "__main__":
    main()
