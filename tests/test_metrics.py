"""Metrics: the frozen snapshot, its counters and its latency percentiles."""

from __future__ import annotations

import dataclasses

import pytest

import asyncworkers as aw
from _helpers import Blocker, double, fail, no_hang
from asyncworkers._core._metrics import WINDOW, Recorder, Series


def assert_ordered(latency: aw.Latency) -> None:
    assert 0.0 <= latency.p50 <= latency.p90 <= latency.p99 <= latency.max


def test_metrics_is_a_frozen_dataclass() -> None:
    assert dataclasses.is_dataclass(aw.Metrics)
    fields = {f.name for f in dataclasses.fields(aw.Metrics)}
    assert {
        "submitted",
        "completed",
        "failed",
        "cancelled",
        "retried",
        "running",
        "pending",
        "workers",
        "wait_time",
        "run_time",
    } <= fields
    snapshot = Recorder().snapshot(running=0, pending=0, workers=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.completed = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.wait_time.p50 = 1.0  # type: ignore[misc]


def test_empty_latency_is_all_zero() -> None:
    latency = Series().snapshot()
    assert latency == aw.Latency()
    assert (latency.p50, latency.p90, latency.p99, latency.max, latency.count) == (0, 0, 0, 0, 0)


def test_nearest_rank_percentiles() -> None:
    series = Series()
    series.samples.extend(float(n) for n in range(100, 0, -1))  # order of arrival is irrelevant
    latency = series.snapshot()
    assert (latency.p50, latency.p90, latency.p99, latency.max) == (50.0, 90.0, 99.0, 100.0)
    assert latency.count == 100


def test_single_sample() -> None:
    series = Series()
    series.samples.append(0.25)
    latency = series.snapshot()
    assert (latency.p50, latency.p90, latency.p99, latency.max, latency.count) == (
        0.25,
        0.25,
        0.25,
        0.25,
        1,
    )


def test_window_keeps_recent_samples_but_max_and_count_cover_all() -> None:
    series = Series()
    series.samples.append(1000.0)  # an early outlier that falls out of the window
    series.samples.extend([1.0] * (2 * WINDOW))
    latency = series.snapshot()
    assert len(series.samples) == WINDOW
    assert latency.count == 2 * WINDOW + 1
    assert latency.max == 1000.0
    assert latency.p99 == 1.0


def test_finished_is_the_sum_of_terminal_counters() -> None:
    recorder = Recorder()
    recorder.completed, recorder.failed, recorder.cancelled = 3, 2, 1
    snapshot = recorder.snapshot(running=0, pending=0, workers=1)
    assert snapshot.finished == 6


async def test_counters_after_a_mix_of_outcomes() -> None:
    async with aw.Runtime(2) as rt:
        assert rt.metrics().submitted == 0
        rt.pause()
        ok = [rt.submit_nowait(double, i) for i in range(5)]
        bad = [rt.submit_nowait(fail) for _ in range(3)]
        gone = [rt.submit_nowait(double, 0) for _ in range(2)]
        for job in gone:
            job.cancel()
        m = rt.metrics()
        assert (m.submitted, m.pending, m.running, m.completed, m.cancelled) == (10, 8, 0, 0, 2)
        rt.resume()
        with no_hang():
            assert await rt.join()
        m = rt.metrics()
        assert m.submitted == 10
        assert m.completed == 5
        assert m.failed == 3
        assert m.cancelled == 2
        assert m.retried == 0
        assert m.finished == 10
        assert m.running == 0
        assert m.pending == 0
        assert m.workers == 2
        assert m.worker_errors == 0
        # wait time is sampled when a job starts, run time when it finishes after running
        assert m.wait_time.count == 8
        assert m.run_time.count == 8
        assert_ordered(m.wait_time)
        assert_ordered(m.run_time)
        assert all(job.done() for job in ok + bad + gone)


async def test_running_pending_and_workers_are_live() -> None:
    holder = Blocker()
    async with aw.Runtime(1) as rt:
        rt.submit_nowait(holder.run)
        with no_hang():
            await holder.started.wait()
        rt.submit_nowait(double, 1)
        rt.submit_nowait(double, 2)
        m = rt.metrics()
        assert (m.running, m.pending, m.workers, m.submitted) == (1, 2, 1, 3)
        holder.release.set()
        with no_hang():
            assert await rt.join()
        m = rt.metrics()
        assert (m.running, m.pending, m.completed) == (0, 0, 3)


async def test_snapshot_does_not_change_afterwards() -> None:
    async with aw.Runtime(1) as rt:
        before = rt.metrics()
        with no_hang():
            await rt.run(double, 1)
        after = rt.metrics()
        assert before.completed == 0
        assert after.completed == 1
        assert before != after


async def test_percentiles_over_many_jobs_are_ordered() -> None:
    async with aw.Runtime(4) as rt:
        jobs = [rt.submit_nowait(double, i) for i in range(300)]
        with no_hang():
            assert await rt.join()
        assert [job.result() for job in jobs] == [2 * i for i in range(300)]
        m = rt.metrics()
        assert m.wait_time.count == m.run_time.count == 300
        assert_ordered(m.wait_time)
        assert_ordered(m.run_time)
