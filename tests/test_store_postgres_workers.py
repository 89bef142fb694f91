"""Real worker processes on PostgreSQL only: four workers drain 5,000 jobs in claim order,
a worker's connections killed mid-job, a server unreachable (one line) or away then back.
The scenarios every store shares (SIGKILL, SIGTERM, crash loops, blocked loops, hostile
rows) run on PostgreSQL through tests/_store_support.py. Tests wait on the database and on
files, never on time."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio

import asyncworkers as aw
from _pg import admin
from _store_pg import PostgresFactory, postgres_factory
from _store_support import REPO, Worker, inversions_at_most, lines, query, wait_until, workers
from asyncworkers.store import Store
from asyncworkers.store._jobs import new_job

# Leases long enough that a starved worker on a loaded machine keeps them (its heartbeat
# thread beats every lease/3); these tests never wait for one to end.
LEASE_S = 6.0
LEASE = ["--lease", str(LEASE_S), "--poll-interval", "0.2"]


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


def test_four_workers_drain_5000_jobs_each_claimed_once_in_claim_order(tmp_path: Path) -> None:
    n, concurrency, procs = 5000, 10, 4
    with postgres_factory(tmp_path) as factory:

        async def fill(store: Store) -> list[int]:
            # priorities interleaved, so that claim order differs from insertion order
            return await store.enqueue_many(
                new_job("echo", {"value": i}, priority=(i * 7) % 3) for i in range(n)
            )

        opts = ["--poll-interval", "0.2", "--concurrency", str(concurrency)]  # lease 30 s
        with workers(factory.url, tmp_path, procs, *opts) as crew:
            # every worker is up and idle: the NOTIFY of the insert wakes them all at once
            ids = query(factory, fill)
            assert len(set(ids)) == n
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
                # beats before the kill renewed it to at most killed_at + lease
                return bool(row["until"] is not None and row["until"] > killed_at + LEASE_S)

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


class Forwarder:
    """A TCP forwarder 127.0.0.1:port -> the PostgreSQL server, in a thread of its own: a
    database that is away until the test starts it (the real server is shared: never
    stopped by a test)."""

    def __init__(self) -> None:
        with socket.socket() as probe:  # a free port, nobody listening on it yet
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=30)

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 5432)

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))

    def stop(self) -> None:
        if self._thread.is_alive():

            async def close() -> None:
                if self._server is not None:
                    self._server.close()
                for task in asyncio.all_tasks():
                    if task is not asyncio.current_task():
                        task.cancel()

            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
        self._loop.close()


def test_a_worker_waits_for_a_server_that_is_away_then_works(tmp_path: Path) -> None:
    forwarder = Forwarder()
    with postgres_factory(tmp_path) as factory:
        away_url = factory.url.replace(":5432/", f":{forwarder.port}/")
        log = tmp_path / "worker.log"
        worker = Worker(away_url, log, *LEASE)
        try:
            wait_until("the worker to say it waits", lambda: "trying again" in worker.output())
            assert worker.proc.poll() is None  # it waits; it did not exit
            first = worker.output().splitlines()[0]
            assert f"127.0.0.1:{forwarder.port}" in first
            forwarder.start()  # the database comes up

            async def put(store: Store) -> int:
                from _store_tasks import tasks

                return await tasks.enqueue(store, "echo", {"value": 7})

            job_id = query(factory, put)
            wait_until("the job to succeed", lambda: counts(factory)["succeeded"] == 1)
            worker.signal(signal.SIGTERM)
            assert worker.wait() == 0
            assert "Traceback" not in worker.output()
            (done,) = rows(factory, "SELECT id, result FROM {t}")
            assert (done["id"], done["result"]) == (job_id, "7")
        finally:
            worker.stop()
            forwarder.stop()


def test_sigkill_mid_job_runs_again_after_the_lease(tmp_path: Path) -> None:
    marks, release = tmp_path / "marks", tmp_path / "release"
    short = ["--lease", "1", "--poll-interval", "0.1"]  # the kill is what we wait out
    with postgres_factory(tmp_path) as factory:

        async def put(store: Store) -> int:
            from _store_tasks import tasks

            return await tasks.enqueue(store, "hold", {"path": str(marks), "release": str(release)})

        job_id = query(factory, put)
        with workers(factory.url, tmp_path, 1, *short) as (first,):
            wait_until("the job to start", lambda: lines(marks))
            first.signal(signal.SIGKILL)
            first.wait()
        release.touch()
        with workers(factory.url, tmp_path, 1, *short) as (second,):
            wait_until("the job to succeed", lambda: counts(factory)["succeeded"] == 1)
            second.signal(signal.SIGTERM)
            assert second.wait() == 0
        (done,) = rows(factory, "SELECT id, attempts, result FROM {t}")
    assert (done["id"], done["result"]) == (job_id, '"released"')
    assert done["attempts"] >= 2  # the crash counted
    starts = [line.split()[0] for line in lines(marks) if line.endswith("start")]
    assert starts[0] == str(first.proc.pid)
    assert str(second.proc.pid) in starts[1:]


def test_hostile_rows_end_dead_with_a_reason_never_run(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    hostile = {
        "unknown task": ("no.such.task", "'{}'"),
        "not valid JSON": ("mark", "'{not json'"),
        "over the 1000000 limit": ("mark", "'{\"path\": \"' || repeat('a', 1100000) || '\"}'"),
        "over the 16000000 limit": ("mark", "'{\"path\": \"' || repeat('a', 16100000) || '\"}'"),
    }
    with postgres_factory(tmp_path) as factory:
        counts(factory)  # opening a store makes the schema
        for task, args_sql in hostile.values():
            literal = args_sql.replace("{", "{{").replace("}", "}}")  # rows() formats {t}
            rows(factory, f"INSERT INTO {{t}} (task, args) VALUES ($1, {literal})", task)

        async def put(store: Store) -> int:  # and one good job after them
            from _store_tasks import tasks

            return await tasks.enqueue(store, "mark", {"path": str(marks), "value": 1})

        good = query(factory, put)
        with workers(factory.url, tmp_path, 1, *LEASE) as (worker,):
            wait_until("every row to end", lambda: counts(factory)["queued"] == 0)
            wait_until("nothing running", lambda: counts(factory)["running"] == 0)
            worker.signal(signal.SIGTERM)
            assert worker.wait() == 0
        found = rows(factory, "SELECT id, state, error, attempts FROM {t} ORDER BY id")
    assert [line.split()[1] for line in lines(marks)] == ["1"]  # only the good job ran
    *bad, last = found
    assert (last["id"], last["state"]) == (good, "succeeded")
    for reason, row in zip(hostile, bad, strict=True):
        assert row["state"] == "dead"
        assert row["error"].startswith("rejected, never run")
        assert reason in row["error"]
