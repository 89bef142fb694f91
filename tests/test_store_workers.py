"""Real worker processes (``python -m asyncworkers worker``) on every store: SIGKILL and
SIGTERM mid-job, a job that kills its worker, a job that blocks its event loop, several
workers on one store. Tests wait on the database and on marker files, never on time."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import asyncworkers as aw
from _store_support import StoreFactory, Worker, lines, query, wait_until, workers
from asyncworkers.store import Store

# Short leases so that a dead worker's job comes back soon; quick polls for the same reason.
LEASE = ["--lease", "1", "--poll-interval", "0.1"]


def record(factory: StoreFactory, job_id: int) -> aw.store.JobRecord:
    async def get(store: Store) -> aw.store.JobRecord | None:
        return await store.get(job_id)

    found = query(factory, get)
    assert found is not None
    return found  # type: ignore[no-any-return]


def enqueue(factory: StoreFactory, task: str, args: dict[str, Any], **options: Any) -> int:
    from _store_tasks import tasks

    async def put(store: Store) -> int:
        return await tasks.enqueue(store, task, args, **options)

    return query(factory, put)  # type: ignore[no-any-return]


def in_state(factory: StoreFactory, job_id: int, state: str) -> bool:
    return record(factory, job_id).state == state


def clean(worker: Worker) -> None:
    """No lock error or crash reached the worker's output."""
    out = worker.output()
    assert "database is locked" not in out
    assert "Traceback" not in out, out


def test_sigkill_mid_job_runs_again_after_the_lease(
    store_factory: StoreFactory, tmp_path: Path
) -> None:
    marks, release = tmp_path / "marks", tmp_path / "release"
    job_id = enqueue(store_factory, "hold", {"path": str(marks), "release": str(release)})
    with workers(store_factory.url, tmp_path, 1, *LEASE) as (first,):
        wait_until("the job to start", lambda: lines(marks))
        first.signal(signal.SIGKILL)
        first.wait()
    release.touch()
    with workers(store_factory.url, tmp_path, 1, *LEASE) as (second,):
        wait_until("the job to succeed", lambda: in_state(store_factory, job_id, "succeeded"))
        second.signal(signal.SIGTERM)
        assert second.wait() == 0
        clean(second)
    runs = [line for line in lines(marks) if line.endswith("start")]
    assert len(runs) == 2
    assert runs[0].split()[0] != runs[1].split()[0]  # two different processes
    done = record(store_factory, job_id)
    assert (done.attempts, done.result) == (2, "released")


def test_sigterm_drains_then_releases_and_a_second_stops_at_once(
    store_factory: StoreFactory, tmp_path: Path
) -> None:
    quick_marks, stuck_marks = tmp_path / "quick", tmp_path / "stuck"
    release = tmp_path / "release"
    quick = enqueue(store_factory, "hold", {"path": str(quick_marks), "release": str(release)})
    stuck = enqueue(
        store_factory, "hold", {"path": str(stuck_marks), "release": str(tmp_path / "never")}
    )
    options = [*LEASE, "--concurrency", "3", "--shutdown-grace", "3600"]
    with workers(store_factory.url, tmp_path, 1, *options) as (worker,):
        wait_until("both jobs to start", lambda: lines(quick_marks) and lines(stuck_marks))
        worker.signal(signal.SIGTERM)
        wait_until("the drain to begin", lambda: "draining" in worker.output())
        late = enqueue(store_factory, "echo", {"value": 1})
        release.touch()
        wait_until("the quick job to drain", lambda: in_state(store_factory, quick, "succeeded"))
        assert in_state(store_factory, late, "queued")  # no claims after SIGTERM
        worker.signal(signal.SIGTERM)  # the second: do not wait for the stuck job
        assert worker.wait() == 0
        clean(worker)
    stuck_row = record(store_factory, stuck)
    assert (stuck_row.state, stuck_row.attempts) == ("queued", 0)  # attempt not counted
    assert stuck_row.worker is None

    async def counts(store: Store) -> dict[str, int]:
        return await store.counts()  # type: ignore[return-value]

    assert query(store_factory, counts) == {
        "queued": 2, "running": 0, "succeeded": 1, "dead": 0, "cancelled": 0,
    }  # fmt: skip


def test_grace_runs_out_and_the_job_goes_back(store_factory: StoreFactory, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    job_id = enqueue(store_factory, "hold", {"path": str(marks), "release": str(tmp_path / "x")})
    with workers(store_factory.url, tmp_path, 1, *LEASE, "--shutdown-grace", "0.2") as (w,):
        wait_until("the job to start", lambda: lines(marks))
        w.signal(signal.SIGTERM)
        assert w.wait() == 0
        clean(w)
    row = record(store_factory, job_id)
    assert (row.state, row.attempts) == ("queued", 0)


def test_a_job_that_kills_its_worker_ends_dead(store_factory: StoreFactory, tmp_path: Path) -> None:
    """`suicide` has 2 attempts: two crashes, counted as attempts, then the dead letters."""
    marks = tmp_path / "marks"
    job_id = enqueue(store_factory, "suicide", {"path": str(marks)})
    for crash in (1, 2):
        with workers(store_factory.url, tmp_path, 1, *LEASE) as (worker,):
            wait_until(f"crash {crash}", lambda: worker.proc.poll() is not None)
            assert worker.proc.returncode == -signal.SIGKILL
        assert len(lines(marks)) == crash
    with workers(store_factory.url, tmp_path, 1, *LEASE) as (survivor,):
        wait_until("the dead letter", lambda: in_state(store_factory, job_id, "dead"))
        survivor.signal(signal.SIGTERM)
        assert survivor.wait() == 0
    row = record(store_factory, job_id)
    assert row.attempts == 2
    assert row.error is not None
    assert "lease expired" in row.error
    assert len(lines(marks)) == 2  # never run a third time


def test_a_blocked_event_loop_keeps_its_lease(store_factory: StoreFactory, tmp_path: Path) -> None:
    """The job blocks its worker's loop for 4 leases; the heartbeat thread renews the lease,
    so the second worker, sweeping expired leases all along, never takes the job. Should a
    starved machine delay the heartbeat past the lease anyway, the other rule must hold:
    the late result of the lost attempt is refused."""
    marks = tmp_path / "marks"
    job_id = enqueue(store_factory, "block_loop", {"path": str(marks), "seconds": 4.0})
    with workers(store_factory.url, tmp_path, 2, *LEASE) as pair:
        wait_until("the job to succeed", lambda: in_state(store_factory, job_id, "succeeded"))
        for worker in pair:
            worker.signal(signal.SIGTERM)
        for worker in pair:
            assert worker.wait() == 0
            clean(worker)
    starts = [line for line in lines(marks) if line.endswith("start")]
    row = record(store_factory, job_id)
    if len(starts) == 1:
        assert row.attempts == 1
    else:  # the lease was lost: the first attempt's write must have been refused
        log = "".join(w.output() for w in pair)
        assert "lost its lease" in log or "write refused" in log, log
    assert row.result == "unblocked"


def test_three_workers_share_one_store(store_factory: StoreFactory, tmp_path: Path) -> None:
    """3 processes claim at once (and the test enqueues meanwhile): every job runs exactly
    once, and no "database is locked" reaches anyone."""
    marks = tmp_path / "marks"
    n = 600
    first = [enqueue(store_factory, "mark", {"path": str(marks), "value": i}) for i in range(3)]

    async def bulk(store: Store) -> list[int]:
        from _store_tasks import tasks

        jobs = [tasks.job("mark", {"path": str(marks), "value": i}) for i in range(3, n)]
        return await store.enqueue_many(jobs)

    with workers(store_factory.url, tmp_path, 3, *LEASE, "--concurrency", "4") as crew:
        ids = first + query(store_factory, bulk)

        async def all_done(store: Store) -> bool:
            return (await store.counts())["succeeded"] == n

        wait_until("every job", lambda: query(store_factory, all_done))
        for worker in crew:
            worker.signal(signal.SIGTERM)
        for worker in crew:
            assert worker.wait() == 0
            clean(worker)
    values = Counter(line.split()[1] for line in lines(marks))
    assert values == Counter(str(i) for i in range(n))  # each exactly once
    assert len(ids) == n


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--store", "mysql://localhost/x"], "unknown store URL"),
        (["--store", "sqlite:////no/such/folder/x.db"], "does not exist"),
        (["--tasks", "no_such_module:tasks"], "cannot import 'no_such_module'"),
        (["--tasks", "tests._store_tasks:nothing"], "is not an aw.store.TaskRegistry"),
        (["--tasks", "tests._store_tasks"], "expected module:registry"),
        (["--concurrency", "0"], "--concurrency"),
        (["--lease", "-1"], "--lease"),
    ],
)
def test_worker_bad_input_is_one_line_and_exit_2(
    store_factory: StoreFactory, tmp_path: Path, args: list[str], expected: str
) -> None:
    import subprocess
    import sys

    from _store_support import REPO, TASKS

    argv = ["--store", store_factory.url, "--tasks", TASKS, *args]
    proc = subprocess.run(
        [sys.executable, "-m", "asyncworkers", "worker", *argv],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1, proc.stderr
