"""Scale-out: throughput of asyncworkers workers on 1, 2 and 3 hosts sharing one PostgreSQL.

The hosts are network namespaces on a private bridge (tests/_hosts.py; needs root), each
running one ``asyncworkers worker`` process (``--concurrency``, 10 by default); PostgreSQL
is a private server listening on the bridge (tests/_pg_cluster.py: a fresh initdb, fsync
off: it measures the queue's work, not the disk's). Run it as root:

    .venv/bin/python benchmarks/scale.py                 # --runs 3 --jobs 20000
    .venv/bin/python benchmarks/scale.py --latency-ms 200 # and 3 hosts 200 ms away

For each kind of job (``noop``: trivial; ``sleep``: 10 ms of ``asyncio.sleep``) and each
number of hosts, medians of ``--runs`` runs (interleaved: run 1 of every case, then run 2...):
the workers start and go idle, the jobs are enqueued in bulk, and the rate is taken from
the server's own clock, jobs over the span from the first claim to the last completion.
CPU per job is read from ``/proc/PID/stat`` (user + system) of every PostgreSQL process of
the private server and of the workers, over the same stretch (the enqueue included).

With ``--latency-ms N``, 3 hosts reach the server through a proxy that holds every chunk
N/2 ms each way (no ``tc netem`` in this kernel): the round trip grows by N ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import asyncpg

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

from _hosts import DelayProxy, Network, network  # noqa: E402
from _pg_cluster import PrivateCluster, private_cluster  # noqa: E402

GUARD = 600.0  # a hang becomes an error, never a figure
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def server_pids(cluster: PrivateCluster) -> list[int]:
    """The postmaster of the private server and every process it started."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == postmaster:
            pids.append(int(stat.parent.name))
    return pids


@dataclass
class Result:
    kind: str
    hosts: int
    latency_ms: int
    jobs: int
    rate: float  # jobs per second
    db_cpu_us: float  # PostgreSQL CPU per job, microseconds
    worker_cpu_us: float  # the workers' CPU per job


async def _sql(dsn: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def _fill(dsn: str, kind: str, n: int) -> None:
    sys.path.insert(0, str(HERE))
    from _store_tasks import tasks
    from asyncworkers.store._postgres import PostgresStore

    args = {"seconds": 0.01} if kind == "sleep" else {}
    async with PostgresStore(dsn) as store:
        await store.enqueue_many([tasks.job(kind, args)] * n)


async def _wait_done(dsn: str, schema: str, n: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        with anyio.fail_after(GUARD):
            while True:
                done = await conn.fetchval(
                    f"SELECT count(*) FROM \"{schema}\".jobs WHERE state = 'succeeded'"
                )
                if done >= n:
                    return
                await anyio.sleep(0.05)
    finally:
        await conn.close()


@contextmanager
def workers(net: Network, count: int, url: str, concurrency: int) -> Iterator[list[int]]:
    """One worker process in each of the first *count* hosts, idle; their pids."""
    procs = []
    with tempfile.TemporaryDirectory() as logs:
        try:
            for i, host in enumerate(list(net)[:count]):
                with open(Path(logs) / f"{i}.log", "w") as log:
                    procs.append(
                        host.popen(
                            [
                                sys.executable,
                                "-m",
                                "asyncworkers",
                                "worker",
                                "--store",
                                url,
                                "--tasks",
                                "_store_tasks:tasks",
                                "--concurrency",
                                str(concurrency),
                                "--poll-interval",
                                "0.5",
                            ],
                            cwd=HERE,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL,
                            env={"PYTHONPATH": str(HERE)},
                        )
                    )
            deadline = time.monotonic() + GUARD
            for i, proc in enumerate(procs):  # it says so once its store is open
                log_path = Path(logs) / f"{i}.log"
                while "task(s), concurrency" not in log_path.read_text():
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"a worker did not start: {log_path.read_text()}")
                    time.sleep(0.05)
            yield [p.pid for p in procs]
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def one_run(
    net: Network, cluster: PrivateCluster, kind: str, hosts: int, n: int, concurrency: int,
    latency_ms: int, tag: str,
) -> Result:  # fmt: skip
    schema = f"scale_{tag}"
    admin = cluster.dsn
    direct = f"{admin}?schema={schema}"
    anyio.run(_sql, admin, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    anyio.run(_fill, direct, kind, 0)  # the tables, before the workers race to make them
    with ExitStack() as stack:
        port = cluster.port
        if latency_ms:
            proxy = DelayProxy(cluster.host, (cluster.host, cluster.port), latency_ms / 2000)
            port = stack.enter_context(proxy).port
        url = f"postgresql://postgres@{cluster.host}:{port}/postgres?schema={schema}"
        pids = stack.enter_context(workers(net, hosts, url, concurrency))
        db = server_pids(cluster)
        db_before = sum(cpu_seconds(p) for p in db)
        workers_before = sum(cpu_seconds(p) for p in pids)
        anyio.run(_fill, direct, kind, n)
        anyio.run(_wait_done, admin, schema, n)
        db_cpu = sum(cpu_seconds(p) for p in server_pids(cluster)) - db_before
        worker_cpu = sum(cpu_seconds(p) for p in pids) - workers_before
    (span,) = anyio.run(
        _sql,
        admin,
        "SELECT extract(epoch FROM max(finished_at) - min(started_at))::float8 AS s"
        f' FROM "{schema}".jobs',
    )
    anyio.run(_sql, admin, f'DROP SCHEMA "{schema}" CASCADE')
    return Result(kind, hosts, latency_ms, n, n / span["s"], db_cpu / n * 1e6, worker_cpu / n * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=20_000, help="trivial jobs per run")
    parser.add_argument("--sleep-jobs", type=int, default=10_000, help="10 ms jobs per run")
    parser.add_argument("--concurrency", type=int, default=10, help="per worker process")
    parser.add_argument("--latency-ms", type=int, default=0, help="also: 3 hosts this far")
    parser.add_argument("--latency-jobs", type=int, default=1000, help="jobs of those runs")
    parser.add_argument(
        "--kinds",
        type=lambda text: text.split(","),
        default=["noop", "sleep"],
        help="noop (trivial), sleep (10 ms) or both (default: noop,sleep)",
    )
    args = parser.parse_args()
    cases = [(kind, hosts, 0) for kind in args.kinds for hosts in (1, 2, 3)]
    if args.latency_ms:
        cases += [(kind, 3, args.latency_ms) for kind in args.kinds]
    results: dict[tuple[str, int, int], list[Result]] = {case: [] for case in cases}
    with network(3) as net, private_cluster(net.gateway, clients=str(net.subnet)) as cluster:
        for run in range(args.runs):
            for kind, hosts, latency in cases:
                n = args.jobs if kind == "noop" else args.sleep_jobs
                n = args.latency_jobs if latency else n
                tag = f"{kind}_{hosts}_{latency}_{run}"
                r = one_run(net, cluster, kind, hosts, n, args.concurrency, latency, tag)
                results[(kind, hosts, latency)].append(r)
                print(
                    f"run {run + 1}: {kind:5} {hosts} host(s) +{latency} ms: {r.rate:8,.0f} "
                    f"jobs/s, PostgreSQL {r.db_cpu_us:5.0f} us/job, workers "
                    f"{r.worker_cpu_us:5.0f} us/job",
                    file=sys.stderr,
                    flush=True,
                )
    print(f"\nmedians of {args.runs} runs; one worker process per host, concurrency "
          f"{args.concurrency}; {os.cpu_count()} CPUs\n")  # fmt: skip
    print(
        "| jobs | hosts | added RTT | jobs/s | vs 1 host | paired | PostgreSQL CPU/job "
        "| workers CPU/job |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind, hosts, latency in cases:
        runs = results[(kind, hosts, latency)]
        rate = statistics.median(r.rate for r in runs)
        ones = results[(kind, 1, 0)]
        base = statistics.median(r.rate for r in ones)
        # the median of each run's own ratio: a run meets the machine's load of its moment
        paired = statistics.median(r.rate / one.rate for r, one in zip(runs, ones, strict=True))
        label = "trivial" if kind == "noop" else "sleep 10 ms"
        print(
            f"| {label} | {hosts} | {latency} ms | {rate:,.0f} | {rate / base:.2f}x | "
            f"{paired:.2f}x | "
            f"{statistics.median(r.db_cpu_us for r in runs):,.0f} us | "
            f"{statistics.median(r.worker_cpu_us for r in runs):,.0f} us |"
        )


if __name__ == "__main__":
    main()
