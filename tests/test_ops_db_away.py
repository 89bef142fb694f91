"""The database goes away under a running worker, and comes back.

PostgreSQL: a private server (tests/_pg_cluster.py; never the shared one) is stopped while
a worker holds running jobs, then started again. The worker keeps its jobs, ``/readyz``
says the database is away, claims resume by themselves, and every job succeeds exactly
once. Tests wait for events (marker files, endpoint answers, rows), never for time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

import asyncworkers as aw
from _ops_support import get, ops_worker, poll_until
from _pg_cluster import private_cluster
from _store_support import PROCESS_GUARD, REPO, lines, wait_until
from test_ops_worker import samples

JOBS = 30
CONCURRENCY = 10


def _on(dsn: str, fn: Any) -> Any:
    async def main() -> Any:
        store = aw.store.open_store(dsn)
        await store.open()
        try:
            return await fn(store)
        finally:
            await store.close()

    return anyio.run(main)


def test_postgres_restart_under_a_running_worker_loses_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    marks, release = tmp_path / "marks", tmp_path / "release"
    with private_cluster() as cluster:
        from _ops_tasks import tasks

        async def fill(store: aw.store.Store) -> list[int]:
            return [
                await tasks.enqueue(store, "tagged_hold",
                                    {"path": str(marks), "release": str(release), "tag": i})
                for i in range(JOBS)
            ]  # fmt: skip

        ids = _on(cluster.dsn, fill)
        options = ("--concurrency", str(CONCURRENCY))
        with ops_worker(cluster.dsn, tmp_path, *options) as worker:
            wait_until("the first jobs to run", lambda: len(lines(marks)) == CONCURRENCY)
            assert get(worker.url + "/readyz")[0] == 200

            cluster.stop()  # the database goes away with 10 jobs running and 20 queued
            _, text = poll_until("/readyz to say so", worker.url + "/readyz",
                                 lambda s, t: s == 503)  # fmt: skip
            assert "database away" in json.loads(text)["reason"]
            assert get(worker.url + "/healthz")[0] == 200  # alive: a restart would not help
            _, text, _ = get(worker.url + "/metrics")
            assert samples(text)[("asyncworkers_jobs_in_flight", ())] == CONCURRENCY

            cluster.start()
            release.touch()  # the held jobs end now, their writes reach the new server
            poll_until("/readyz to pass again", worker.url + "/readyz", lambda s, t: s == 200)

            def done() -> bool:
                async def count(store: aw.store.Store) -> int:
                    return (await store.counts())["succeeded"]

                return _on(cluster.dsn, count) == JOBS  # type: ignore[no-any-return]

            wait_until("every job to succeed", done)
            _, text = poll_until(
                "the outcomes in /metrics", worker.url + "/metrics",
                lambda s, t: samples(t).get(("asyncworkers_jobs_total", (
                    ("outcome", "succeeded"), ("queue", "default"), ("task", "tagged_hold"),
                ))) == JOBS,
            )  # fmt: skip
            assert samples(text)[("asyncworkers_lease_losses_total", ())] == 0
            assert worker.stop() == 0
        runs = Counter(int(line) for line in lines(marks))
        assert runs == Counter(range(JOBS))  # every job ran, and ran once

        async def records(store: aw.store.Store) -> list[Any]:
            return [await store.get(i) for i in ids]

        for record in _on(cluster.dsn, records):
            assert (record.state, record.attempts) == ("succeeded", 1)
    assert "cannot reach PostgreSQL" in worker.output()  # the worker said so


def test_a_full_sqlite_disk_under_a_running_worker_keeps_the_jobs(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("this test mounts a small tmpfs: it needs root and unshare (CI runs as root)")
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable,
         str(Path(__file__).parent / "_ops_disk_scenario.py"), str(tmp_path / "disk"),
         str(tmp_path)],
        capture_output=True, text=True, cwd=REPO, timeout=PROCESS_GUARD * 2,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    report = json.loads(done.stdout)
    assert "write failed (StoreFull" in report["log"]  # the worker said so, and so did /readyz:
    status, body = report["readyz_while_full"]
    assert status == 503
    assert "StoreFull" in json.loads(body)["reason"]
    assert report["counts"]["succeeded"] == 3  # kept, then written once there was room
    assert sorted(report["runs"]) == ["0", "1", "2"]  # each ran once
    assert report["lease_losses"] == ["0.0"]
    assert report["rc"] == 0
