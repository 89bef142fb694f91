"""Workers on three hosts (network namespaces on a private bridge, tests/_hosts.py) share one
PostgreSQL: a private server listening on the bridge (never the shared 127.0.0.1:5432), one
fresh schema per test. Each host runs two ``asyncworkers worker`` processes.

- 10,000 jobs drain, each exactly once (its row, and its own side effect: a row with a unique
  key, which a second run could not insert), in claim order;
- a host cut off mid-run: its jobs come back after the lease and run on the others, its late
  writes are refused by fencing, and once its link is back it takes jobs again;
- 200 ms more round trip to the database (a delaying proxy: no ``tc netem`` here): every job
  still runs once, and no job longer than the lease loses it.

Tests wait on the database, on files and on logs, never on time.
"""

from __future__ import annotations

import signal
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

from _hosts import DelayProxy, Network
from _pg_cluster import PrivateCluster, private_cluster
from _store_support import Worker, inversions_at_most, wait_until
from asyncworkers.store._jobs import new_job
from asyncworkers.store._postgres import PostgresStore

WORKERS_PER_HOST = 2
SCALE_TASKS = "tests._scale_tasks:tasks"


@pytest.fixture(scope="module")
def pg(hosts: Network) -> Iterator[PrivateCluster]:
    """A private PostgreSQL on the bridge's address, for the module."""
    with private_cluster(host=hosts.gateway, clients=str(hosts.subnet)) as cluster:
        yield cluster


@dataclass
class Db:
    """One test's schema on the private server, seen from the test process."""

    cluster: PrivateCluster
    schema: str
    host: str  # where the workers reach the server: the bridge, or a proxy on it
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres?schema={self.schema}"

    def fetch(self, sql: str, *args: Any) -> list[Any]:
        async def go() -> list[Any]:
            conn = await asyncpg.connect(self.cluster.dsn, timeout=30)
            try:
                return list(await conn.fetch(sql.format(s=f'"{self.schema}"'), *args))
            finally:
                await conn.close()

        return anyio.run(go)

    def value(self, sql: str, *args: Any) -> Any:
        return self.fetch(sql, *args)[0][0]

    def enqueue(self, jobs: list[Any]) -> list[int]:
        async def go() -> list[int]:
            async with PostgresStore(f"{self.cluster.dsn}?schema={self.schema}") as store:
                return await store.enqueue_many(jobs)

        return anyio.run(go)

    def succeeded(self) -> int:
        return int(self.value("SELECT count(*) FROM {s}.jobs WHERE state = 'succeeded'"))


@contextmanager
def database(pg: PrivateCluster, name: str) -> Iterator[Db]:
    db = Db(pg, name, pg.host, pg.port)
    db.fetch("CREATE SCHEMA {s}")
    db.fetch("CREATE TABLE {s}.effects (key text PRIMARY KEY, host text NOT NULL, pid int)")
    db.enqueue([])  # the store's own tables, before any worker races to make them
    try:
        yield db
    finally:
        db.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name LIKE '%:' || $1 AND pid <> pg_backend_pid()",
            name,
        )
        db.fetch("DROP SCHEMA {s} CASCADE")


@dataclass
class Crew:
    """The worker processes of every host; ``by_pid`` maps a worker's pid to its host."""

    workers: list[Worker]
    host_of: dict[int, str]

    def stop(self) -> None:
        """SIGTERM every worker; each drains and exits 0 without a traceback."""
        for worker in self.workers:
            worker.signal(signal.SIGTERM)
        for worker in self.workers:
            assert worker.wait() == 0, worker.output()
            assert "Traceback" not in worker.output(), worker.output()

    def logs(self, host: str) -> str:
        return "".join(w.output() for w in self.workers if self.host_of[w.proc.pid] == host)


@contextmanager
def crew(
    hosts: Network, db: Db, tmp_path: Path, *options: str, extra_queue: dict[str, str] | None = None
) -> Iterator[Crew]:
    """WORKERS_PER_HOST workers on every host; *extra_queue* {host: queue} gives a host's
    workers one more queue than the shared ``default``."""
    runs = tmp_path / "runs"
    runs.mkdir(exist_ok=True)
    started: list[Worker] = []
    host_of: dict[int, str] = {}
    try:
        for i, host in enumerate(hosts):
            label = f"h{i}"
            env = {
                "AW_SCALE_HOST": label,
                "AW_SCALE_DSN": f"postgresql://postgres@{db.host}:{db.port}/postgres",
                "AW_SCALE_TABLE": f'"{db.schema}".effects',
                "AW_SCALE_APP": f"scale-effects:{db.schema}",
                "AW_SCALE_RUNS": str(runs),
            }
            queues = ["--queue", "default"]
            if extra_queue and label in extra_queue:
                queues += ["--queue", extra_queue[label]]
            for k in range(WORKERS_PER_HOST):
                worker = Worker(
                    db.url, tmp_path / f"{label}-{k}.log", *options, *queues,
                    tasks=SCALE_TASKS, launcher=host.command([]), env=env,
                )  # fmt: skip
                started.append(worker)
                host_of[worker.proc.pid] = label
        for worker in started:
            worker.wait_ready()
        yield Crew(started, host_of)
    finally:
        for worker in started:
            worker.stop()


def pid_of(worker_column: str) -> int:
    return int(worker_column.rsplit(":", 1)[1])


def test_three_hosts_drain_10000_jobs_each_exactly_once_in_claim_order(
    hosts: Network, pg: PrivateCluster, tmp_path: Path
) -> None:
    n, concurrency = 10_000, 25
    with database(pg, "drain") as db:
        # priorities interleaved, so that claim order differs from insertion order; all in
        # before the workers start, so that every claim sees the whole queue
        db.enqueue([new_job("effect", {"key": f"k{i}"}, priority=(i * 7) % 3) for i in range(n)])
        opts = ["--concurrency", str(concurrency), "--lease", "30", "--poll-interval", "0.2"]
        with crew(hosts, db, tmp_path, *opts) as workers:
            wait_until("every job", lambda: db.succeeded() == n)
            workers.stop()
        rows = db.fetch(
            "SELECT j.id, j.priority, j.state, j.attempts, j.claims, j.worker, j.result,"
            " e.host AS effect_host, extract(epoch FROM j.started_at)::float8 AS started"
            " FROM {s}.jobs j LEFT JOIN {s}.effects e ON e.key = j.args::json->>'key'"
        )
        effects = db.value("SELECT count(*) FROM {s}.effects")
    assert len(rows) == n
    # each job claimed once, run once (a second run could not insert its effect row: it
    # would have failed, and shown as a second attempt), by the host that wrote the effect
    assert {(r["state"], r["attempts"], r["claims"]) for r in rows} == {("succeeded", 1, 1)}
    assert effects == n
    assert all(r["result"] == f'"{r["effect_host"]}"' for r in rows)
    per_host: dict[str, int] = defaultdict(int)
    for r in rows:
        per_host[workers.host_of[pid_of(r["worker"])]] += 1
    assert sorted(per_host) == ["h0", "h1", "h2"], per_host  # every host took part
    # Claim order: a job may be claimed after a lower-ranked one only when both were taken
    # by claims running at the same moment (SKIP LOCKED passes over the other's rows): at
    # most one claim in flight per other worker, `concurrency` rows apiece.
    ranked = sorted(rows, key=lambda r: (-r["priority"], r["id"]))
    procs = len(hosts) * WORKERS_PER_HOST
    inversions_at_most([r["started"] for r in ranked], (procs - 1) * concurrency)


def runs_by_job(tmp_path: Path) -> dict[str, list[tuple[str, str]]]:
    """key -> [(what, host)] from every worker's run notes (tests/_scale_tasks.py)."""
    runs: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for path in (tmp_path / "runs").glob("*"):
        for line in path.read_text().splitlines():
            key, what, host, _pid = line.split()
            runs[key].append((what, host))
    return runs


def test_a_host_cut_off_mid_run_loses_its_jobs_to_the_others_then_resumes(
    hosts: Network, pg: PrivateCluster, tmp_path: Path
) -> None:
    n, lease = 300, 2.0
    with database(pg, "cut") as db:
        db.enqueue([new_job("nap", {"key": f"k{i}", "seconds": 0.2}) for i in range(n)])
        opts = ["--concurrency", "5", "--lease", str(lease), "--poll-interval", "0.2"]
        with crew(hosts, db, tmp_path, *opts, extra_queue={"h0": "h0-only"}) as workers:
            h0 = {pid for pid, host in workers.host_of.items() if host == "h0"}

            def running_on_h0() -> int:
                rows = db.fetch("SELECT worker FROM {s}.jobs WHERE state = 'running'")
                return sum(pid_of(r["worker"]) in h0 for r in rows)

            wait_until("h0 to hold jobs", running_on_h0)
            hosts[0].cut()
            try:
                # h0 cannot write any more: its rows leave 'running' only when another
                # worker puts them back after the lease; then the others run them
                wait_until("h0's claims to expire", lambda: not running_on_h0())
                wait_until("the others to drain the queue", lambda: db.succeeded() == n)
            finally:
                hosts[0].restore()
            # only h0 serves this queue: these succeed only once h0 works again
            db.enqueue([new_job("nap", {"key": f"h0-{i}", "seconds": 0.01}, queue="h0-only")
                        for i in range(5)])  # fmt: skip
            wait_until("h0 to resume", lambda: db.succeeded() == n + 5)
            # the writes h0 made while cut off reach the server once the link is back
            refused = "write refused, its claim was lost"
            wait_until("h0's late writes to be refused", lambda: refused in workers.logs("h0"))
            workers.stop()
        rows = db.fetch(
            "SELECT args::json->>'key' AS key, state, attempts, worker, result FROM {s}.jobs"
        )
    runs = runs_by_job(tmp_path)
    assert {r["state"] for r in rows} == {"succeeded"}
    rerun = 0
    for r in rows:
        host = workers.host_of[pid_of(r["worker"])]
        assert r["result"] == f'"{host}"', r  # one completion, by the claim that holds it
        finished = [h for what, h in runs[r["key"]] if what == "done"]
        assert host in finished, (r, runs[r["key"]])
        if r["key"].startswith("h0-"):
            assert host == "h0"  # h0 resumed
        elif "h0" in finished and host != "h0":
            # h0 ran it to its end while cut off, and its result was refused: the job came
            # back after the lease and ran on another host, whose result stands
            rerun += 1
            assert r["attempts"] == 2
            assert sorted(finished)[0] == "h0"
            assert len(finished) == 2
        else:
            assert len(finished) == 1  # nothing else ran twice
    assert rerun > 0


def test_200ms_more_round_trip_to_the_database_loses_no_lease(
    hosts: Network, pg: PrivateCluster, tmp_path: Path
) -> None:
    # A lease must outlast a third of itself (the beat interval) plus a beat (two round
    # trips). 2 s leases were lost while the heartbeat opened its connection at its first
    # renewal (~5 round trips); it now opens it at the start.
    lease, long_naps, short_naps = 3.0, 30, 300
    with database(pg, "latency") as db:
        # jobs longer than the lease (kept only by heartbeats, each now >= 200 ms) among
        # short ones, all through a proxy that holds every chunk 100 ms each way
        db.enqueue(
            [new_job("nap", {"key": f"long{i}", "seconds": 1.5 * lease}) for i in range(long_naps)]
            + [new_job("nap", {"key": f"short{i}", "seconds": 0.0}) for i in range(short_naps)]
        )
        with DelayProxy(pg.host, (pg.host, pg.port), one_way=0.1) as proxy:
            slow = Db(pg, db.schema, pg.host, proxy.port)
            opts = ["--concurrency", "10", "--lease", str(lease), "--poll-interval", "0.2"]
            with crew(hosts, slow, tmp_path, *opts) as workers:
                wait_until("every job", lambda: db.succeeded() == long_naps + short_naps)
                workers.stop()
                logs = "".join(workers.logs(f"h{i}") for i in range(len(hosts)))
        rows = db.fetch(
            "SELECT args::json->>'key' AS key, state, attempts, claims,"
            " extract(epoch FROM finished_at - started_at)::float8 AS took FROM {s}.jobs"
        )
    runs = runs_by_job(tmp_path)
    assert {(r["state"], r["attempts"], r["claims"]) for r in rows} == {("succeeded", 1, 1)}
    assert all(len(runs[r["key"]]) == 2 for r in rows)  # one start, one end: one run each
    assert all(r["took"] > lease for r in rows if r["key"].startswith("long"))
    assert "lost its lease" not in logs
    assert "write refused" not in logs
