"""The job lifecycle and the core's small truths (issue 10): read-only state, one source of
truth for done(), current_job() where a job's code runs, percentiles kept incrementally,
public names where users import them."""

from __future__ import annotations

import asyncio
import importlib.metadata
import math
import random
import traceback

import anyio
import anyio.to_process
import pytest
from hypothesis import given
from hypothesis import strategies as st

import asyncworkers as aw
from _helpers import Blocker, double, no_hang
from asyncworkers._core._metrics import TRIM_AT, WINDOW, Series


async def test_state_attempts_and_timings_are_read_only() -> None:
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(double, 2)
        for name, value in [
            ("state", aw.JobState.COMPLETED),
            ("attempts", 3),
            ("queued_at", 0.0),
            ("started_at", 0.0),
            ("finished_at", 0.0),
        ]:
            with pytest.raises(AttributeError):
                setattr(job, name, value)
        await job


async def test_done_follows_the_state_through_the_lifecycle() -> None:
    blocker = Blocker()
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(blocker.run, 5)
        assert (job.state, job.done(), job.started_at, job.finished_at) == (
            aw.JobState.PENDING,
            False,
            None,
            None,
        )
        with no_hang():
            await blocker.started.wait()
        assert (job.state, job.done(), job.attempts) == (aw.JobState.RUNNING, False, 1)
        assert job.started_at is not None
        assert job.finished_at is None
        blocker.release.set()
        with no_hang():
            assert await job == 5
        assert (job.state, job.done(), job.cancelled()) == (aw.JobState.COMPLETED, True, False)
        assert job.queued_at <= job.started_at <= job.finished_at  # type: ignore[operator]


async def test_current_job_in_the_job_its_child_task_and_its_thread() -> None:
    seen: dict[str, aw.Job[object] | None] = {}

    async def parent() -> None:
        seen["job"] = aw.current_job()

        async def child() -> None:
            seen["child"] = aw.current_job()

        await asyncio.create_task(child())  # the job waits for what it started
        seen["thread"] = await anyio.to_thread.run_sync(aw.current_job)

    async with aw.Runtime(2) as rt:
        job = rt.submit_nowait(parent)
        with no_hang():
            await job
    assert seen == {"job": job, "child": job, "thread": job}
    assert aw.current_job() is None


async def test_a_job_awaited_while_someone_joins_wakes_both() -> None:
    # Regression: the join waiters once shadowed the job's own waiters at its end.
    blocker = Blocker()
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(blocker.run, 9)
        awaiting = asyncio.ensure_future(job.wait())
        joining = asyncio.ensure_future(rt.join())
        with no_hang():
            await blocker.started.wait()
            blocker.release.set()
            assert await joining is True
            assert await awaiting is aw.JobState.COMPLETED


@given(
    st.lists(
        st.one_of(st.floats(0, 1000, allow_nan=False), st.just("snapshot")),
        max_size=300,
    )
)
def test_percentiles_kept_incrementally_match_a_full_sort(ops: list[float | str]) -> None:
    series = Series()
    for op in ops:
        if op == "snapshot":
            check_against_sort(series)
        else:
            assert isinstance(op, float)
            series.samples.append(op)
    check_against_sort(series)


def check_against_sort(series: Series) -> None:
    got = series.snapshot()
    ordered = sorted(series.samples)
    if not ordered:
        assert got == aw.Latency()
        return

    def rank(q: float) -> float:  # nearest rank, as documented
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    assert (got.p50, got.p90, got.p99, got.max) == (rank(0.5), rank(0.9), rank(0.99), ordered[-1])


def test_a_trim_keeps_the_count_and_the_all_time_maximum() -> None:
    series = Series()
    rng = random.Random(1)
    values = [rng.random() for _ in range(TRIM_AT)]
    values[3] = 99.0  # an old maximum, trimmed away
    series.samples.extend(values)
    series.snapshot()
    assert len(series.samples) == WINDOW
    latency = series.snapshot()
    assert latency.count == TRIM_AT
    assert latency.max == 99.0
    assert latency.p50 == sorted(values[-WINDOW:])[WINDOW // 2 - 1]


def test_public_exceptions_show_where_users_import_them() -> None:
    for error in (aw.QueueFull, aw.JobCancelled, aw.JobTimeout, aw.RuntimeClosed):
        assert error.__module__ == "asyncworkers"
    text = "".join(traceback.format_exception_only(aw.QueueFull("full")))
    assert text.startswith("asyncworkers.QueueFull: full")


def test_version_comes_from_the_package_metadata() -> None:
    assert aw.__version__ == importlib.metadata.version("asyncworkers")


def test_anyio_still_keeps_its_process_pool_where_the_bridge_looks() -> None:
    # run_in_process starts a worker process under a shield unless an idle one waits in
    # anyio's pool, which it finds in this private RunVar. If an anyio upgrade moves it,
    # every process job pays a start-up round trip: this says so before anyone measures it.
    idle = getattr(anyio.to_process, "_process_pool_idle_workers", None)
    assert idle is not None, (
        f"anyio {importlib.metadata.version('anyio')} no longer has "
        "to_process._process_pool_idle_workers: update _bridges._idle_worker_waiting"
    )
