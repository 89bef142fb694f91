"""Real worker processes on PostgreSQL only: four workers drain 5,000 jobs in claim order,
a worker's connections killed mid-job, an unreachable server. The scenarios every store
shares (SIGKILL, SIGTERM, crash loops, blocked loops, hostile rows) run on PostgreSQL
through tests/_store_support.py. Tests wait on the database and on files, never on time."""

from __future__ import annotations

import bisect
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio

import asyncworkers as aw
from _pg import admin
from _store_pg import PostgresFactory, postgres_factory
from _store_support import REPO, lines, query, wait_until, workers
from asyncworkers.store import Store
from asyncworkers.store._jobs import new_job

LEASE = ["--lease", "2", "--poll-interval", "0.2"]


def counts(factory: PostgresFactory) -> dict[aw.store.State, int]:
    async def get(store: Store) -> dict[aw.store.State, int]:
        return await store.counts()

    return query(factory, get)  # type: ignore[no-any-return]


def rows(factory: PostgresFactory, sql: str, *args: Any) -> list[Any]:
    async def fetch() -> list[Any]:
        conn = await admin()
        try:
            return list(await conn.fetch(sql.format(t=f'"{factory.schema}".jobs'), *args))
        finally:
            await conn.close()

    return anyio.run(fetch)


def inversions_at_most(ranked_starts: list[float], bound: int) -> int:
    """The largest number of jobs ranked after some job that were claimed strictly before
    it; fails when that exceeds *bound*."""
    later: list[float] = []  # claim times of the jobs ranked after the current one, sorted
    worst = 0
    for started in reversed(ranked_starts):
        worst = max(worst, bisect.bisect_left(later, started))
        bisect.insort(later, started)
    assert worst <= bound, f"a job was overtaken by {worst} lower-ranked jobs (bound {bound})"
    return worst


def test_four_workers_drain_5000_jobs_each_claimed_once_in_claim_order(tmp_path: Path) -> None:
    n, concurrency, procs = 5000, 10, 4
    with postgres_factory(tmp_path) as factory:

        async def fill(store: Store) -> list[int]:
            # priorities interleaved, so that claim order differs from insertion order
            return await store.enqueue_many(
                new_job("echo", {"value": i}, priority=(i * 7) % 3) for i in range(n)
            )

        ids = query(factory, fill)
        assert len(set(ids)) == n
        opts = [*LEASE, "--concurrency", str(concurrency)]
        with workers(factory.url, tmp_path, procs, *opts) as crew:
            wait_until("every job", lambda: counts(factory)["succeeded"] == n)
            for worker in crew:
                worker.signal(signal.SIGTERM)
            for worker in crew:
                assert worker.wait() == 0
                assert "Traceback" not in worker.output()
        found = rows(
            factory,
            "SELECT id, priority, state, attempts, claims, worker, result,"
            " extract(epoch FROM started_at)::float8 AS started FROM {t}",
        )
    assert len(found) == n
    # each job claimed exactly once, run once, by one of the workers
    assert {(r["state"], r["attempts"], r["claims"]) for r in found} == {("succeeded", 1, 1)}
    assert sorted(int(r["result"]) for r in found) == list(range(n))
    assert len({r["worker"] for r in found}) >= 2  # the work was shared
    # Claim order: a job may be claimed after a lower-ranked one only when both were taken
    # by claims running at the same moment (SKIP LOCKED passes over the other's rows): at
    # most the other workers' one claim in flight each, `concurrency` rows apiece.
    ranked = sorted(found, key=lambda r: (-r["priority"], r["id"]))
    inversions_at_most([r["started"] for r in ranked], (procs - 1) * concurrency)


def test_killed_connections_mid_job_reconnect_without_a_second_run(tmp_path: Path) -> None:
    marks, release = tmp_path / "marks", tmp_path / "release"
    with postgres_factory(tmp_path) as factory:

        async def put(store: Store) -> int:
            from _store_tasks import tasks

            return await tasks.enqueue(store, "hold", {"path": str(marks), "release": str(release)})

        job_id = query(factory, put)
        with workers(factory.url, tmp_path, 1, *LEASE) as (worker,):
            wait_until("the job to start", lambda: lines(marks))
            killed_at = rows(factory, "SELECT extract(epoch FROM now())::float8 AS t")[0]["t"]
            # every connection of the worker: pool, outcome writes, LISTEN, heartbeat
            assert kill_backends(factory.schema) >= 3

            def renewed_after_the_kill() -> bool:
                (row,) = rows(
                    factory,
                    "SELECT extract(epoch FROM lease_until)::float8 AS until FROM {t}"
                    " WHERE id = $1",
                    job_id,
                )
                # a heartbeat that began after the kill: lease + 1 s past it
                return bool(row["until"] is not None and row["until"] > killed_at + 3)

            wait_until("a heartbeat on a new connection", renewed_after_the_kill)
            release.touch()
            wait_until("the job to succeed", lambda: counts(factory)["succeeded"] == 1)
            worker.signal(signal.SIGTERM)
            assert worker.wait() == 0
            assert "Traceback" not in worker.output()
        (done,) = rows(factory, "SELECT state, attempts, claims FROM {t}")
    assert [line.split()[1] for line in lines(marks)] == ["start", "done"]  # one run
    assert (done["state"], done["attempts"], done["claims"]) == ("succeeded", 1, 1)


def kill_backends(schema: str) -> int:
    async def kill() -> int:
        conn = await admin()
        try:
            n: int = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name LIKE 'asyncworkers-%:' || $1",
                schema,
            )
        finally:
            await conn.close()
        return n

    return anyio.run(kill)


def test_unreachable_server_is_one_line_naming_host_and_port() -> None:
    url = "postgresql://postgres@127.0.0.1:1/test"
    for verb in (["status"], ["enqueue", "echo"]):
        done = subprocess.run(
            [sys.executable, "-m", "asyncworkers", *verb, "--store", url],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert "127.0.0.1:1" in line
