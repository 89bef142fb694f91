"""Durable job queues side by side on the same PostgreSQL: asyncworkers, pgqueuer, procrastinate.

Run it in an environment with the peers (the ``bench`` extra), PostgreSQL at 127.0.0.1:5432:

    python3 -m venv .bench-venv && .bench-venv/bin/pip install -q -e '.[bench]'
    .bench-venv/bin/python benchmarks/store.py            # --runs 3 --jobs 5000

Each system gets a database of its own (aw_bench_*, made afresh) on the same server. For
every system, medians of ``--runs`` runs (run 1 of every system, then run 2 of every system,
and so on: a change of load on a shared machine meets all of them alike) of:

- enqueue one by one (``--single`` jobs, awaited one after the other) and in bulk (one call);
- process: ``--jobs`` trivial jobs queued first, then worker processes started (1, then 2),
  each with concurrency 10 and the system's own documented async worker; the rate is taken
  between the first and the last job seen done (polling the database every 10 ms), so that
  process start-up is left out;
- pick-up: an idle worker (LISTEN/NOTIFY for all three), one job enqueued at a time; the
  time from just before the enqueue call to the task's first line (written to a file).

Then, for asyncworkers only: the SQLite store (one worker) for comparison, and SIGKILL mid-job
with the defaults (lease 30 s, poll 1 s): how long until the job runs again (``--no-sigkill``
skips the 30-odd seconds this takes). procrastinate processes ``min(--jobs, 500)`` jobs: at its
rate 5,000 would take over a minute per run.

asyncworkers is measured twice: as configured by default (the worker's writes commit
without waiting for the disk: a server crash can only make a job run again), and with
``durable_writes=true`` (every commit waits for the WAL flush, as the peers' do).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

HERE = Path(__file__).resolve().parent
ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
SERVER = "postgresql://postgres@127.0.0.1:5432/"
POLL = 0.01
PROCESS_GUARD = 300.0  # a hang becomes an error, never a figure


# -- the systems ---------------------------------------------------------------------------


@dataclass
class System:
    name: str
    db: str
    max_jobs: int | None = None  # cap on --jobs for processing (slow peers)

    @property
    def dsn(self) -> str:
        return SERVER + self.db

    async def setup(self) -> None: ...
    async def reset(self, conn: asyncpg.Connection) -> None: ...
    async def enqueue_one(self, task: str, i: int) -> None: ...
    async def enqueue_bulk(self, n: int) -> None: ...
    async def done(self, conn: asyncpg.Connection, n: int) -> int: ...
    def worker(self) -> list[str]: ...
    async def close(self) -> None: ...


@dataclass
class Asyncworkers(System):
    url: str = ""
    store: Any = None
    tasks: Any = None

    async def setup(self) -> None:
        import asyncworkers as aw

        sys.path.insert(0, str(HERE))
        from _store_tasks import tasks

        self.tasks = tasks
        self.store = aw.store.open_store(self.url)
        await self.store.open()

    async def reset(self, conn: asyncpg.Connection) -> None:
        if self.url.startswith("sqlite"):
            await self.store.purge(time.time() + 3600)  # everything has ended by now
            return
        await conn.execute("TRUNCATE asyncworkers.jobs")

    async def enqueue_one(self, task: str, i: int) -> None:
        await self.tasks.enqueue(self.store, task, {"i": i} if task == "stamp" else None)

    async def enqueue_bulk(self, n: int) -> None:
        job = self.tasks.job("noop")
        await self.store.enqueue_many([job] * n)

    async def done(self, conn: asyncpg.Connection, n: int) -> int:
        if self.url.startswith("sqlite"):
            return int((await self.store.counts())["succeeded"])
        return int(
            await conn.fetchval("SELECT count(*) FROM asyncworkers.jobs WHERE state='succeeded'")
        )

    def worker(self) -> list[str]:
        return [sys.executable, "-m", "asyncworkers", "worker", "--store", self.url,
                "--tasks", "_store_tasks:tasks", "--concurrency", "10"]  # fmt: skip

    async def close(self) -> None:
        await self.store.close()


@dataclass
class Pgqueuer(System):
    conn: Any = None
    queries: Any = None

    async def setup(self) -> None:
        from pgqueuer import Queries

        self.conn = await asyncpg.connect(self.dsn)
        self.queries = Queries.from_asyncpg_connection(self.conn)
        await self.queries.install()

    async def reset(self, conn: asyncpg.Connection) -> None:
        await conn.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")

    async def enqueue_one(self, task: str, i: int) -> None:
        await self.queries.enqueue(task, str(i).encode() if task == "stamp" else None)

    async def enqueue_bulk(self, n: int) -> None:
        await self.queries.enqueue(["noop"] * n, [None] * n, [0] * n)

    async def done(self, conn: asyncpg.Connection, n: int) -> int:
        return n - int(await conn.fetchval("SELECT count(*) FROM pgqueuer"))

    def worker(self) -> list[str]:
        return [sys.executable, str(HERE / "_peer_pgqueuer.py"), self.dsn]

    async def close(self) -> None:
        await self.conn.close()


@dataclass
class Procrastinate(System):
    app: Any = None
    opened: Any = None

    async def setup(self) -> None:
        sys.path.insert(0, str(HERE))
        from _peer_procrastinate import make_app

        self.app = make_app(f"postgresql://postgres@127.0.0.1:5432/{self.db}")
        self.opened = self.app.open_async()
        await self.opened.__aenter__()
        await self.app.schema_manager.apply_schema_async()

    async def reset(self, conn: asyncpg.Connection) -> None:
        await conn.execute("TRUNCATE procrastinate_jobs CASCADE")

    async def enqueue_one(self, task: str, i: int) -> None:
        t = self.app.tasks[task]
        await (t.defer_async(i=i) if task == "stamp" else t.defer_async())

    async def enqueue_bulk(self, n: int) -> None:
        await self.app.tasks["noop"].batch_defer_async(*([{}] * n))

    async def done(self, conn: asyncpg.Connection, n: int) -> int:
        sql = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
        return int(await conn.fetchval(sql))

    def worker(self) -> list[str]:
        return [sys.executable, str(HERE / "_peer_procrastinate.py"), self.dsn]

    async def close(self) -> None:
        await self.opened.__aexit__(None, None, None)


# -- measurements --------------------------------------------------------------------------


@dataclass
class Figures:
    single: list[float] = field(default_factory=list)  # jobs/s
    bulk: list[float] = field(default_factory=list)
    one: list[float] = field(default_factory=list)
    two: list[float] = field(default_factory=list)
    pickup: list[float] = field(default_factory=list)  # seconds, p50 of each run


def start(cmd: list[str], stamps: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AW_BENCH_STAMPS": str(stamps), "PYTHONPATH": str(HERE)}
    return subprocess.Popen(
        cmd, cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def until(what: str, check: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + PROCESS_GUARD
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"still waiting for {what} after {PROCESS_GUARD} s")
        await asyncio.sleep(POLL)


async def process_rate(
    system: System, conn: asyncpg.Connection, n: int, workers: int, stamps: Path
) -> float:
    await system.reset(conn)
    await system.enqueue_bulk(n)
    procs = [start(system.worker(), stamps) for _ in range(workers)]
    try:
        first: tuple[float, int] | None = None
        deadline = time.monotonic() + PROCESS_GUARD
        while True:
            count = await system.done(conn, n)
            now = time.perf_counter()
            if count and first is None:
                first = (now, count)
            if count >= n:
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{system.name}: workers stopped or hung at {count}/{n}")
            await asyncio.sleep(POLL)
    finally:
        stop(procs)
    assert first is not None
    return (n - first[1]) / max(now - first[0], 1e-9)


async def pickup_p50(system: System, conn: asyncpg.Connection, samples: int, stamps: Path) -> float:
    await system.reset(conn)
    _clear(stamps)
    proc = start(system.worker(), stamps)
    try:
        # a first job shows the worker is up; then each sample starts from an idle worker
        await system.enqueue_one("stamp", -1)
        await until(f"{system.name} to start", lambda: _has_stamp(stamps, -1))
        delays = []
        for i in range(samples):
            await asyncio.sleep(0.1)  # idle: the worker waits on LISTEN (or its poll)
            sent = time.time()
            await system.enqueue_one("stamp", i)
            await until(f"{system.name} pick-up", lambda i=i: _has_stamp(stamps, i))  # type: ignore[misc]
            delays.append(_stamp_of(stamps, i) - sent)
    finally:
        stop([proc])
    return statistics.median(delays)


async def _has_stamp(stamps: Path, i: int) -> bool:
    return _stamp_of(stamps, i) > 0


def _stamp_of(stamps: Path, i: int) -> float:
    for line in _lines(stamps):
        index, _, at = line.partition(" ")
        if index == str(i):
            return float(at)
    return 0.0


async def measure_once(
    system: System, conn: asyncpg.Connection, args: argparse.Namespace, stamps: Path, f: Figures
) -> None:
    """One run of every figure for *system*, appended to *f*."""
    n = min(args.jobs, system.max_jobs or args.jobs)
    await system.reset(conn)
    started = time.perf_counter()
    for i in range(args.single):
        await system.enqueue_one("noop", i)
    f.single.append(args.single / (time.perf_counter() - started))
    await system.reset(conn)
    started = time.perf_counter()
    await system.enqueue_bulk(n)
    f.bulk.append(n / (time.perf_counter() - started))
    f.one.append(await process_rate(system, conn, n, 1, stamps))
    if not args.one_worker_only:
        f.two.append(await process_rate(system, conn, n, 2, stamps))
    f.pickup.append(await pickup_p50(system, conn, args.samples, stamps))


async def sigkill_rerun(url: str, stamps: Path) -> float:
    """Seconds from SIGKILL of a worker mid-job until the job starts again elsewhere, with
    the defaults (lease 30 s, poll 1 s)."""
    import asyncworkers as aw

    sys.path.insert(0, str(HERE))
    from _store_tasks import tasks

    _clear(stamps)
    async with aw.store.open_store(url) as store:
        await store.purge(time.time() + 3600)
        await tasks.enqueue(store, "sleepy", {"i": 1, "seconds": 3600})
    worker = [sys.executable, "-m", "asyncworkers", "worker", "--store", url,
              "--tasks", "_store_tasks:tasks"]  # fmt: skip
    first = start(worker, stamps)
    await until("the job to start", lambda: _count(stamps, 1))
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed = time.time()
    second = start(worker, stamps)
    try:
        await until("the job to run again", lambda: _count(stamps, 2))
    finally:
        stop([second])
    return float(_lines(stamps)[1].split()[1]) - killed


async def _count(stamps: Path, n: int) -> bool:
    return len(_lines(stamps)) >= n


def _lines(stamps: Path) -> list[str]:
    return stamps.read_text().splitlines() if stamps.exists() else []


def _clear(stamps: Path) -> None:
    stamps.write_text("")


# -- report --------------------------------------------------------------------------------


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _paired(ours: list[float], theirs: list[float]) -> float:
    ratios = [a / b for a, b in zip(ours, theirs, strict=False) if b]
    return statistics.median(ratios) if ratios else float("nan")


def _row(name: str, f: Figures, *, last: bool = False) -> str:
    def cell(values: list[float], scale: float, unit: str, digits: int) -> str:
        if not values:
            return "-"
        value = (values[-1] if last else _med(values)) * scale
        return f"{value:,.{digits}f}{unit}"

    rates = [cell(v, 1, "/s", 0) for v in (f.single, f.bulk, f.one, f.two)]
    return f"| {name} | {' | '.join(rates)} | {cell(f.pickup, 1000, ' ms', 1)} |"


def report(results: dict[str, Figures], sqlite: Figures | None, sigkill: float | None) -> None:
    print()
    print("| | enqueue one by one | bulk enqueue | process, 1 worker | 2 workers | pick-up p50 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, figures in results.items():
        print(_row(name, figures))
    if sqlite is not None:
        print(_row("asyncworkers, SQLite store", sqlite))
    print()
    ours = results.get("asyncworkers")
    durable = results.get("asyncworkers durable_writes")
    for peer in ("pgqueuer 1.6", "procrastinate 3.10"):
        if peer not in results or ours is None:
            continue
        theirs = results[peer]
        line = (
            f"asyncworkers / {peer}: process 1 worker x{_med(ours.one) / _med(theirs.one):.2f}"
            f", 2 workers x{_med(ours.two) / _med(theirs.two):.2f}"
            f", bulk x{_med(ours.bulk) / _med(theirs.bulk):.2f}"
            f", one by one x{_med(ours.single) / _med(theirs.single):.2f}"
            f", pick-up p50 {_med(ours.pickup) * 1000:.1f} vs {_med(theirs.pickup) * 1000:.1f} ms"
        )
        if durable is not None:
            line += f"; durable_writes: process x{_med(durable.one) / _med(theirs.one):.2f}"
        print(line)
        # The same runs paired: each ratio within one round of the interleaved runs, where
        # both met the same load; the median of those is steadier than a ratio of medians.
        print(
            f"  paired (median of per-run ratios): process 1 worker "
            f"x{_paired(ours.one, theirs.one):.2f}, 2 workers x{_paired(ours.two, theirs.two):.2f}"
            f", bulk x{_paired(ours.bulk, theirs.bulk):.2f}, one by one "
            f"x{_paired(ours.single, theirs.single):.2f}, pick-up time "
            f"x{_paired(ours.pickup, theirs.pickup):.2f}"
        )
    if sigkill is not None:
        print(
            f"SIGKILL mid-job, defaults (lease 30 s, poll 1 s): ran again {sigkill:.1f} s "
            "after the kill (bound: lease + one poll = 31 s)"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--single", type=int, default=1000, help="jobs enqueued one by one")
    parser.add_argument("--samples", type=int, default=40, help="pick-up samples per run")
    parser.add_argument("--only", action="append", help="run only these systems (by db name)")
    parser.add_argument("--no-sigkill", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--one-worker-only", action="store_true")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="aw-bench-"))
    stamps = tmp / "stamps"
    systems: list[System] = [
        Asyncworkers("asyncworkers", "aw_bench_aw", url=SERVER + "aw_bench_aw"),
        Asyncworkers(
            "asyncworkers durable_writes",
            "aw_bench_awd",
            url=SERVER + "aw_bench_awd?durable_writes=true",
        ),
        Pgqueuer("pgqueuer 1.6", "aw_bench_pgq"),
        Procrastinate("procrastinate 3.10", "aw_bench_proc", max_jobs=500),
    ]
    if args.only:
        systems = [s for s in systems if s.db in args.only]
    admin = await asyncpg.connect(ADMIN)
    results: dict[str, Figures] = {}
    conns: dict[str, asyncpg.Connection] = {}
    try:
        for system in systems:
            await admin.execute(f"DROP DATABASE IF EXISTS {system.db} WITH (FORCE)")
            await admin.execute(f"CREATE DATABASE {system.db}")
            await system.setup()
            conns[system.name] = await asyncpg.connect(system.dsn)
            results[system.name] = Figures()
        # Runs interleave the systems, so that a change of load on the machine meets each
        # of them alike instead of spoiling one system's runs.
        for run in range(args.runs):
            for system in systems:
                figures = results[system.name]
                await measure_once(system, conns[system.name], args, stamps, figures)
                print(f"  run {run + 1}: {_row(system.name, figures, last=True)}", flush=True)
        sqlite = None
        if not args.no_sqlite:
            lite = Asyncworkers("asyncworkers, SQLite", "", url=f"sqlite:///{tmp / 'jobs.db'}")
            await lite.setup()
            sqlite = Figures()
            for _ in range(args.runs):
                sqlite.one.append(await process_rate(lite, admin, args.jobs, 1, stamps))
            await lite.close()
        sigkill = None
        if not args.no_sigkill:
            sigkill = await sigkill_rerun(SERVER + "aw_bench_aw", stamps)
    finally:
        for conn in conns.values():
            await conn.close()
        for system in systems:
            if system.name in conns:
                await system.close()
        await admin.close()
    report(results, sqlite, sigkill)


if __name__ == "__main__":
    asyncio.run(main())
