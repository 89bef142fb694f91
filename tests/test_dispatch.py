"""dispatch(): closed and open models, logs, callbacks, failures, cancellation, bad input.

No test asserts a speed. Pacing tests check the intended times the dispatcher recorded
(computed, so exact), the order of events and late-start counts that follow from what the
tasks wait for, never how fast the machine is.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import _dispatch_funcs as df
import asyncworkers as aw
from _helpers import HANG_GUARD, no_hang, settle


class Fatal(BaseException):
    """A BaseException of the tests' own (KeyboardInterrupt would stop pytest itself)."""


class Response:
    """Stands in for an HTTP response: only its status matters to dispatch()."""

    def __init__(self, status: int) -> None:
        self.status = status


class Gate:
    """Tasks that count themselves in flight and wait until released (or cancelled)."""

    def __init__(self, release_at: int | None = None) -> None:
        self.in_flight = 0
        self.most = 0
        self.started = 0
        self.cancelled = 0
        self.all_started = asyncio.Event()
        self.release = asyncio.Event()
        self.release_at = release_at  # release everyone once this many are in flight

    async def __call__(self, task_id: int, config: Any, task: Any, meta: dict[str, Any]) -> int:
        self.in_flight += 1
        self.started += 1
        self.most = max(self.most, self.in_flight)
        if self.release_at is not None and self.in_flight >= self.release_at:
            self.release.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
        return task_id


async def echo(task_id: int, config: Any, task: Any, metadata: dict[str, Any]) -> Any:
    metadata["seen"] = (task_id, task)
    await asyncio.sleep(0)
    return task


# -- the closed model ----------------------------------------------------------------------


async def test_closed_model_runs_every_task_in_order_of_results() -> None:
    with no_hang():
        report = await aw.dispatch(echo, ["a", "b", "c", "d"], config={"k": 1}, workers=2)
    assert report.results == ["a", "b", "c", "d"]
    assert [log.task_id for log in report.logs] == [1, 2, 3, 4]
    assert [log.metadata for log in report.logs] == [
        {"seen": (1, "a")},
        {"seen": (2, "b")},
        {"seen": (3, "c")},
        {"seen": (4, "d")},
    ]
    assert (report.total, report.completed, report.uncompleted, report.undispatched) == (
        4, 4, 0, 0,
    )  # fmt: skip
    assert (report.succeeded, report.failed, report.late_starts) == (4, 0, 0)
    for log in report.logs:
        assert log.intended_at is None  # the closed model has no schedule
        assert log.started_at is not None
        assert log.ended_at is not None
        assert report.started_at <= log.started_at <= log.ended_at <= report.ended_at
        assert log.duration == log.ended_at - log.started_at
    assert report.duration == report.ended_at - report.started_at


async def test_closed_model_keeps_exactly_workers_tasks_in_flight() -> None:
    gate = Gate(release_at=3)
    with no_hang():
        report = await aw.dispatch(gate, 10, workers=3)
    assert gate.most == 3  # reached the cap, never passed it
    assert report.results == list(range(1, 11))


async def test_an_int_passes_none_as_the_task_and_config_reaches_the_function() -> None:
    seen: list[tuple[int, Any, Any]] = []

    async def note(task_id: int, config: Any, task: Any, metadata: dict[str, Any]) -> None:
        seen.append((task_id, config, task))

    with no_hang():
        report = await aw.dispatch(note, 3, config="cfg", workers=1)
    assert seen == [(1, "cfg", None), (2, "cfg", None), (3, "cfg", None)]
    assert report.completed == 3
    assert report.succeeded == 3


async def test_zero_tasks_is_an_empty_report() -> None:
    report = await aw.dispatch(echo, [])
    assert (report.total, report.completed, report.results, report.logs) == (0, 0, [], [])
    assert report.tps().average == 0.0


async def test_plain_functions_run_in_threads_never_on_the_loop() -> None:
    loop_thread = threading.get_ident()

    def where(task_id: int, config: Any, task: Any, metadata: dict[str, Any]) -> int:
        metadata["thread"] = threading.get_ident()
        return task_id

    with no_hang():
        report = await aw.dispatch(where, 4, workers=2)
    assert report.results == [1, 2, 3, 4]
    assert all(log.metadata["thread"] != loop_thread for log in report.logs)


async def test_process_kind_runs_in_child_processes_and_brings_metadata_back() -> None:
    with no_hang():
        report = await aw.dispatch(df.square_in_child, [2, 3], config=1, kind="process", workers=1)
    assert report.results == [5, 10]
    pids = {log.metadata["pid"] for log in report.logs}
    assert os.getpid() not in pids
    assert len(pids) == 1


async def test_a_process_task_whose_worker_dies_is_a_failed_task() -> None:
    with no_hang():
        report = await aw.dispatch(df.die_on, ["a", "die", "b"], kind="process", workers=1)
    assert report.results[0] == "a"
    assert isinstance(report.results[1], aw.WorkerCrashed)
    assert report.results[2] == "b"  # the pool replaced the process
    assert (report.completed, report.failed, report.uncompleted) == (3, 1, 0)
    assert report.logs[1].started_at is not None


# -- what counts as failed ---------------------------------------------------------------


async def test_false_exceptions_and_http_errors_count_as_failed() -> None:
    outcomes: list[Any] = [
        True, False, None, 0, ValueError("x"), Response(200), Response(404), Response(503),
    ]  # fmt: skip

    async def give(task_id: int, config: Any, task: Any, metadata: dict[str, Any]) -> Any:
        if isinstance(task, Exception):
            raise task
        return task

    with no_hang():
        report = await aw.dispatch(give, outcomes, workers=3)
    assert [log.ok for log in report.logs] == [True, False, True, True, False, True, False, False]
    assert report.results[4] is outcomes[4]  # the exception itself is the result
    assert (report.completed, report.succeeded, report.failed) == (8, 4, 4)


def test_is_failure_survives_a_result_whose_status_cannot_be_read() -> None:
    from asyncworkers.dispatch import is_failure

    class Odd:
        @property
        def status(self) -> int:
            raise RuntimeError("no status here")

    assert not is_failure(Odd())  # not a response we know: not failed


def test_is_failure_knows_requests_style_status_codes() -> None:
    from asyncworkers.dispatch import is_failure

    class RequestsResponse:
        status_code = 500

    assert is_failure(RequestsResponse())
    assert not is_failure(Response(302))
    assert not is_failure(True)
    assert is_failure(False)
    assert is_failure(KeyError())


# -- callbacks ---------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["sync", "async"])
async def test_on_done_sees_each_log_and_its_return_replaces_the_result(style: str) -> None:
    seen: list[tuple[int, Any, Any, tuple[bool, Any]]] = []

    def on_done_sync(task_id: int, config: Any, result: Any, log: aw.TaskLog) -> Any:
        seen.append((task_id, config, result, (log.ok, log.result)))
        return False if task_id == 2 else result * 10

    async def on_done_async(task_id: int, config: Any, result: Any, log: aw.TaskLog) -> Any:
        await asyncio.sleep(0)
        return on_done_sync(task_id, config, result, log)

    on_done = on_done_sync if style == "sync" else on_done_async
    with no_hang():
        report = await aw.dispatch(echo, [1, 2, 3], config="c", on_done=on_done)
    assert sorted((t, c, r) for t, c, r, _ in seen) == [(1, "c", 1), (2, "c", 2), (3, "c", 3)]
    assert all(ok and logged == result for _, _, result, (ok, logged) in seen)  # before
    assert report.results == [10, False, 30]
    assert [log.ok for log in report.logs] == [True, False, True]
    assert (report.succeeded, report.failed) == (2, 1)


@pytest.mark.parametrize("style", ["sync", "async"])
async def test_an_on_done_that_raises_makes_that_task_fail(style: str) -> None:
    def raise_sync(task_id: int, config: Any, result: Any, log: aw.TaskLog) -> Any:
        if task_id == 2:
            raise RuntimeError("callback bug")
        return result

    async def raise_async(task_id: int, config: Any, result: Any, log: aw.TaskLog) -> Any:
        return raise_sync(task_id, config, result, log)

    on_done = raise_sync if style == "sync" else raise_async
    with no_hang():
        report = await aw.dispatch(echo, ["a", "b", "c"], on_done=on_done)
    assert isinstance(report.results[1], RuntimeError)
    assert [log.ok for log in report.logs] == [True, False, True]
    assert report.completed == 3
    assert report.failed == 1


@pytest.mark.parametrize("style", ["sync", "async"])
async def test_on_all_done_runs_in_task_order_after_every_task(style: str) -> None:
    order: list[int] = []
    gate = Gate(release_at=3)

    def after_sync(task_id: int, config: Any, result: Any, log: aw.TaskLog) -> Any:
        assert gate.in_flight == 0  # every task has ended
        order.append(task_id)
        return None if task_id == 1 else False

    async def after_async(task_id: int, config: Any, result: Any, log: aw.TaskLog) -> Any:
        return after_sync(task_id, config, result, log)

    on_all_done = after_sync if style == "sync" else after_async
    with no_hang():
        report = await aw.dispatch(gate, 3, workers=3, on_all_done=on_all_done)
    assert order == [1, 2, 3]
    assert report.results == [None, False, False]
    assert (report.succeeded, report.failed) == (1, 2)  # the counts follow the new results
    assert report.tps(10).intervals == [pytest.approx(1 / report.duration)]


# -- the open model ------------------------------------------------------------------------


async def test_rate_paces_intended_starts_from_the_index_not_from_completions() -> None:
    with no_hang():
        report = await aw.dispatch(echo, 20, rate=400, workers=4)
    intended = [log.intended_at for log in report.logs]
    assert intended == [pytest.approx(report.started_at + i / 400, abs=1e-6) for i in range(20)]
    for log in report.logs:  # no task starts before its time (the loop's timer resolution)
        assert log.started_at is not None
        assert log.intended_at is not None
        assert log.started_at >= log.intended_at - 0.002
    assert report.completed == 20


async def test_a_full_cap_makes_starts_late_without_moving_the_later_ones() -> None:
    # Task 1 holds the only slot for 50 ms; tasks 2..10 are due within 9 ms of the start,
    # so each of them starts more than 5 ms late whatever the machine's speed.
    async def hold_first(task_id: int, config: Any, task: Any, metadata: dict[str, Any]) -> int:
        if task_id == 1:
            await asyncio.sleep(0.05)
        return task_id

    with no_hang():
        report = await aw.dispatch(hold_first, 10, rate=1000, workers=1)
    assert report.late_starts in (9, 10)  # task 1 itself is late only on a crowded loop
    offsets = [log.intended_at - report.started_at for log in report.logs]  # type: ignore[operator]
    assert offsets == [pytest.approx(i / 1000, abs=1e-6) for i in range(10)]
    starts = [log.started_at or 0.0 for log in report.logs]
    assert starts == sorted(starts)  # one slot: strictly one after the other
    assert report.results == list(range(1, 11))


async def test_waiting_for_the_cap_is_a_late_start_however_short() -> None:
    # 10 million a second: every task is due before the one ahead of it (one slot) ends.
    with no_hang():
        report = await aw.dispatch(echo, 20, rate=1e7, workers=1)
    assert report.late_starts in (19, 20)  # all but the first waited for the slot
    assert report.completed == 20


async def test_start_times_are_the_intended_offsets() -> None:
    offsets = [0.0, 0.0, 0.01, 0.02, 0.02]
    with no_hang():
        report = await aw.dispatch(echo, 5, start_times=offsets)
    got = [log.intended_at - report.started_at for log in report.logs]  # type: ignore[operator]
    assert got == [pytest.approx(offset, abs=1e-6) for offset in offsets]


async def test_a_schedule_that_ends_early_leaves_tasks_undispatched() -> None:
    def three_offsets() -> Iterator[float]:
        yield from (0.0, 0.001, 0.002)

    with no_hang():
        report = await aw.dispatch(echo, 10, start_times=three_offsets())
    assert (report.completed, report.undispatched) == (3, 7)
    assert report.results == [None, None, None]


async def test_a_bad_lazy_offset_raises_from_dispatch() -> None:
    def bad() -> Iterator[float]:
        yield from (0.0, 0.5, 0.1)

    with no_hang(), pytest.raises(ValueError, match="must not decrease"):
        await aw.dispatch(echo, 3, start_times=bad())


# -- duration ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["closed", "open"])
async def test_duration_stops_dispatching_and_awaits_the_tasks_in_flight(model: str) -> None:
    # One slot and 50 ms a task: at most 3 of 100 tasks can start within 0.1 s.
    async def slow(task_id: int, config: Any, task: Any, metadata: dict[str, Any]) -> int:
        await asyncio.sleep(0.05)
        return task_id

    rate = 1000.0 if model == "open" else None
    with no_hang():
        report = await aw.dispatch(slow, 100, workers=1, duration=0.1, rate=rate)
    assert report.undispatched >= 97
    assert report.completed == 100 - report.undispatched  # in flight at the end: awaited
    assert report.uncompleted == 0
    assert report.results == list(range(1, report.completed + 1))


# -- record=False --------------------------------------------------------------------------


async def test_record_false_keeps_counts_and_timeline_but_no_logs() -> None:
    logs: list[aw.TaskLog] = []

    def keep(task_id: int, config: Any, result: Any, log: aw.TaskLog) -> Any:
        logs.append(log)
        return result

    with no_hang():
        report = await aw.dispatch(echo, [1, False, 3], record=False, on_done=keep)
    assert (report.results, report.logs) == ([], [])
    assert (report.completed, report.succeeded, report.failed) == (3, 2, 1)
    assert sorted(log.task_id for log in logs) == [1, 2, 3]
    tps = report.tps(interval=60)
    assert tps.intervals[0] * min(60.0, report.duration) == pytest.approx(2)


def test_record_false_memory_stays_flat_over_100k_tasks() -> None:
    # Kept per-task state would leave at least one live object per task (a log, a handle);
    # count the objects the garbage collector tracks after 10k tasks and after 100k.
    live: dict[int, int] = {}

    async def nothing(task_id: int, config: Any, task: Any, metadata: dict[str, Any]) -> None:
        return None

    def sample(task_id: int, config: Any, result: Any, log: aw.TaskLog) -> Any:
        if task_id in (10_000, 100_000):
            gc.collect()
            live[task_id] = len(gc.get_objects())
        return result

    report = aw.dispatch_sync(nothing, 100_000, workers=16, record=False, on_done=sample)
    assert (report.completed, report.succeeded) == (100_000, 100_000)
    assert live[100_000] - live[10_000] < 5_000, live  # 90k tasks later: no growth


# -- runtime= and dispatch_sync ------------------------------------------------------------


async def test_a_given_runtime_runs_the_tasks_and_stays_open() -> None:
    with no_hang():
        async with aw.Runtime(workers=2) as rt:
            report = await aw.dispatch(echo, [1, 2, 3, 4, 5], runtime=rt, workers=8)
            assert rt.metrics().completed == 5
            assert await rt.run(echo, 9, None, "still open", {}) == "still open"
    assert report.results == [1, 2, 3, 4, 5]


def test_dispatch_sync_runs_from_plain_code() -> None:
    report = aw.dispatch_sync(echo, ["x", "y"], workers=2)
    assert report.results == ["x", "y"]
    with pytest.raises(ValueError, match="runtime"):
        aw.dispatch_sync(echo, 1, runtime=object())


# -- cancellation and fatal errors ---------------------------------------------------------


async def test_cancelling_the_caller_cancels_every_task_in_flight() -> None:
    gate = Gate()
    before = asyncio.all_tasks()
    with no_hang():
        caller = asyncio.create_task(aw.dispatch(gate, 100, workers=4))
        while gate.in_flight < 4:
            await asyncio.sleep(0)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
    assert gate.cancelled == 4
    assert gate.in_flight == 0
    assert gate.started == 4
    await settle()
    assert asyncio.all_tasks() == before  # no orphan task left behind


async def test_cancelling_the_caller_cancels_its_jobs_on_a_given_runtime() -> None:
    gate = Gate()
    with no_hang():
        async with aw.Runtime(workers=10) as rt:
            caller = asyncio.create_task(aw.dispatch(gate, 100, workers=3, runtime=rt))
            while gate.in_flight < 3:
                await asyncio.sleep(0)
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await caller
            assert await rt.join(timeout=None)
            m = rt.metrics()
    assert gate.cancelled == 3
    assert (m.cancelled, m.running, m.pending) == (3, 0, 0)


@pytest.mark.parametrize("kind", ["async", "thread"])
async def test_a_task_raising_a_base_exception_stops_the_dispatch(kind: str) -> None:
    gate = Gate()

    async def async_fn(task_id: int, config: Any, task: Any, metadata: dict[str, Any]) -> Any:
        if task_id == 3:
            raise Fatal("stop")
        return await gate(task_id, config, task, metadata)

    def thread_fn(task_id: int, config: Any, task: Any, metadata: dict[str, Any]) -> Any:
        if task_id == 3:
            raise Fatal("stop")
        return task_id

    fn = async_fn if kind == "async" else thread_fn
    with no_hang(), pytest.raises(Fatal, match="stop"):
        await aw.dispatch(fn, 50, workers=3)
    assert gate.in_flight == 0  # the others were cancelled, not left running


@pytest.mark.parametrize("style", ["sync", "async"])
async def test_an_on_done_raising_a_base_exception_stops_the_dispatch(style: str) -> None:
    def stop_sync(task_id: int, config: Any, result: Any, log: aw.TaskLog) -> Any:
        raise Fatal("from on_done")

    async def stop_async(task_id: int, config: Any, result: Any, log: aw.TaskLog) -> Any:
        raise Fatal("from on_done")

    on_done = stop_sync if style == "sync" else stop_async
    with no_hang(), pytest.raises(Fatal, match="from on_done"):
        await aw.dispatch(echo, 20, on_done=on_done)


def test_keyboard_interrupt_in_a_thread_task_reaches_dispatch_sync() -> None:
    def interrupt(task_id: int, config: Any, task: Any, metadata: dict[str, Any]) -> None:
        if task_id == 2:
            raise KeyboardInterrupt
        time.sleep(0.001)

    with pytest.raises(KeyboardInterrupt):
        aw.dispatch_sync(interrupt, 10, workers=2)


# -- bad input -----------------------------------------------------------------------------


BAD_CALLS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"function": 3}, TypeError, "function must be callable"),
    ({"tasks": "abc"}, TypeError, "tasks must be a list or an int"),
    ({"tasks": (1, 2)}, TypeError, "tasks must be a list or an int"),
    ({"tasks": True}, TypeError, "tasks must be a list or an int"),
    ({"tasks": -1}, ValueError, "tasks must be >= 0"),
    ({"workers": 0}, ValueError, "workers must be >= 1"),
    ({"workers": -3}, ValueError, "workers must be >= 1"),
    ({"workers": 2.0}, TypeError, "workers must be an int"),
    ({"rate": 0}, ValueError, "rate must be a positive"),
    ({"rate": -5.0}, ValueError, "rate must be a positive"),
    ({"rate": float("inf")}, ValueError, "rate must be a positive"),
    ({"rate": "fast"}, TypeError, "rate must be a number"),
    ({"rate": 10, "start_times": [0.0]}, ValueError, "not both"),
    ({"start_times": [0.0, 0.1]}, ValueError, "2 offsets for 1 tasks"),
    ({"start_times": [-1.0]}, ValueError, "finite and >= 0"),
    ({"start_times": "0"}, TypeError, "start_times must be an iterable"),
    ({"duration": -1}, ValueError, "duration must be a positive"),
    ({"duration": 0}, ValueError, "duration must be a positive"),
    ({"kind": "fiber"}, ValueError, "kind must be"),
    ({"kind": "thread"}, TypeError, "coroutine function"),
    ({"on_done": "x"}, TypeError, "on_done must be callable"),
    ({"on_all_done": print, "record": False}, ValueError, "record=False"),
    ({"runtime": object()}, TypeError, "runtime must be"),
    ({"progress": 1}, TypeError, "progress must be a bool"),
]


@pytest.mark.parametrize(("changes", "error", "message"), BAD_CALLS)
async def test_bad_input_raises_at_the_call(
    changes: dict[str, Any], error: type[Exception], message: str
) -> None:
    call: dict[str, Any] = {"function": echo, "tasks": 1} | changes
    function, tasks = call.pop("function"), call.pop("tasks")
    started: list[int] = []
    with pytest.raises(error, match=message):
        await aw.dispatch(function, tasks, **({"on_done": lambda *a: started.append(1)} | call))
    assert not started  # nothing ran


# -- TPS figures ---------------------------------------------------------------------------


def test_tps_intervals_and_the_sustained_peak_from_a_timeline() -> None:
    from asyncworkers._dispatch._report import throughput

    timeline = [1] * 10 + [5] * 10 + [1] * 10  # 10/s, 50/s, 10/s in 0.1-s buckets
    tps = throughput(timeline, started_at=1000.0, duration=3.0, interval=1.0, window=1.0)
    assert tps.average == pytest.approx(70 / 3)
    assert tps.intervals == [pytest.approx(10), pytest.approx(50), pytest.approx(10)]
    assert (tps.peak, tps.window) == pytest.approx((50, 1.0))
    assert (tps.peak_started_at, tps.peak_ended_at) == pytest.approx((1001, 1002))
    half = throughput(timeline, started_at=1000.0, duration=3.0, interval=0.5, window=0.5)
    assert half.peak_started_at == pytest.approx(1001)  # the earliest of equal windows
    assert half.intervals == [pytest.approx(v) for v in (10, 10, 50, 50, 10, 10)]


@given(
    timeline=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=80),
    window_steps=st.integers(min_value=1, max_value=30),
    interval_steps=st.integers(min_value=1, max_value=30),
)
def test_tps_peak_is_the_best_window_and_intervals_add_up(
    timeline: list[int], window_steps: int, interval_steps: int
) -> None:
    from asyncworkers._dispatch._report import STEP, throughput

    duration = len(timeline) * STEP
    tps = throughput(
        timeline,
        started_at=0.0,
        duration=duration,
        interval=interval_steps * STEP,
        window=window_steps * STEP,
    )
    if len(timeline) <= window_steps:
        assert tps.peak == pytest.approx(sum(timeline) / duration)
    else:  # brute force: every window of window_steps buckets
        sums = [
            sum(timeline[i : i + window_steps]) for i in range(len(timeline) - window_steps + 1)
        ]
        assert tps.peak == pytest.approx(max(sums) / (window_steps * STEP))
        first = sums.index(max(sums))  # the earliest of equals
        assert tps.peak_started_at == pytest.approx(first * STEP)
    lengths = [min(interval_steps * STEP, duration - i * interval_steps * STEP)
               for i in range(len(tps.intervals))]  # fmt: skip
    assert sum(r * n for r, n in zip(tps.intervals, lengths, strict=True)) == pytest.approx(
        sum(timeline)
    )


def test_tps_of_a_run_shorter_than_the_window_is_the_run_itself() -> None:
    from asyncworkers._dispatch._report import throughput

    tps = throughput([3], started_at=5.0, duration=0.05, interval=1.0, window=1.0)
    assert (tps.average, tps.peak, tps.window) == pytest.approx((60, 60, 0.05))
    assert tps.intervals == [pytest.approx(60)]  # the one slice, over its own length
    assert (tps.peak_started_at, tps.peak_ended_at) == pytest.approx((5.0, 5.05))


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "1s", True])
async def test_tps_refuses_bad_lengths(bad: Any) -> None:
    report = await aw.dispatch(echo, 1)
    with pytest.raises((TypeError, ValueError), match="interval"):
        report.tps(bad)
    with pytest.raises((TypeError, ValueError), match="window"):
        report.tps(1, window=bad)


async def test_the_timeline_counts_each_success_by_when_it_ended() -> None:
    with no_hang():
        report = await aw.dispatch(echo, [1, False, 3, 4, ValueError()], workers=2)
    counts = [0] * len(report.ok_timeline)
    for log in report.logs:
        if log.ok:
            assert log.ended_at is not None
            counts[int((log.ended_at - report.started_at) / 0.1)] += 1
    assert counts == list(report.ok_timeline)
    assert sum(report.ok_timeline) == report.succeeded == 3


# -- more ways in and out ------------------------------------------------------------------


async def test_a_runtime_with_a_full_queue_makes_dispatch_wait_for_room() -> None:
    with no_hang():
        async with aw.Runtime(workers=1, max_pending=1) as rt:
            report = await aw.dispatch(echo, list(range(20)), runtime=rt, workers=5)
    assert report.results == list(range(20))


async def test_a_runtime_shut_down_under_dispatch_raises_runtime_closed() -> None:
    gate = Gate()
    with no_hang():
        async with aw.Runtime(workers=4) as rt:
            caller = asyncio.create_task(aw.dispatch(gate, 50, runtime=rt, workers=2))
            while gate.in_flight < 2:
                await asyncio.sleep(0)
            await rt.shutdown(wait=False)
            with pytest.raises(aw.RuntimeClosed):
                await caller
    assert gate.cancelled == 2


async def test_an_endless_count_with_a_duration_materializes_nothing() -> None:
    with no_hang():
        report = await aw.dispatch(echo, 10**12, rate=2000, duration=0.05, record=True)
    assert 1 <= report.completed < 10**12
    assert len(report.logs) == report.completed  # one log per dispatched task, no more
    assert report.undispatched == 10**12 - report.completed


async def test_record_false_keeps_no_result_alive() -> None:
    class Result:
        pass

    refs: list[weakref.ref[Result]] = []

    async def make(task_id: int, config: Any, task: Any, metadata: dict[str, Any]) -> Result:
        result = Result()
        refs.append(weakref.ref(result))
        return result

    with no_hang():
        report = await aw.dispatch(make, 50, record=False)
    gc.collect()
    assert report.succeeded == 50
    assert [ref() for ref in refs] == [None] * 50


@pytest.mark.parametrize("model", ["closed", "open"])
async def test_cancelling_while_the_feeder_waits_leaves_nothing_running(model: str) -> None:
    # Closed: the feeder waits for a free slot. Open: it sleeps until the next start.
    gate = Gate()
    rate = 0.5 if model == "open" else None
    with no_hang():
        caller = asyncio.create_task(aw.dispatch(gate, 10, workers=1, rate=rate))
        while gate.in_flight < 1:
            await asyncio.sleep(0)
        await settle()
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
    assert (gate.started, gate.cancelled, gate.in_flight) == (1, 1, 0)


def test_cancelling_stops_thread_tasks_at_check_cancelled() -> None:
    started = threading.Barrier(3)
    stopped = threading.Semaphore(0)

    def poll(task_id: int, config: Any, task: Any, metadata: dict[str, Any]) -> None:
        started.wait()
        try:
            while True:
                aw.check_cancelled()
                time.sleep(0.001)
        finally:
            stopped.release()

    async def main() -> None:
        with no_hang():
            caller = asyncio.create_task(aw.dispatch(poll, 10, workers=2))
            await asyncio.to_thread(started.wait)  # both tasks are running in their threads
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await caller

    aw.run(main)
    # A thread cannot be stopped from outside: each leaves at its next check_cancelled().
    assert stopped.acquire(timeout=HANG_GUARD)
    assert stopped.acquire(timeout=HANG_GUARD)


def test_dispatch_sync_from_many_threads_at_once() -> None:
    reports: list[aw.Report] = []

    def one(offset: int) -> None:
        reports.append(aw.dispatch_sync(echo, [offset + i for i in range(50)], workers=4))

    threads = [threading.Thread(target=one, args=(100 * n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.results[0] for r in reports) == [0, 100, 200, 300]
    assert all(r.results == list(range(r.results[0], r.results[0] + 50)) for r in reports)


async def test_dispatch_sync_inside_a_running_loop_says_so() -> None:
    with pytest.raises(RuntimeError):
        aw.dispatch_sync(echo, 1)


async def test_progress_draws_a_bar_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with no_hang():
        report = await aw.dispatch(echo, [1, False], progress=True)
    assert report.completed == 2
    err = capsys.readouterr().err
    assert "dispatch" in err
    assert "ok 1 failed 1" in err


async def test_the_report_repr_does_not_grow_with_the_tasks() -> None:
    # asyncio and loggers repr a finished task's result: that must stay cheap.
    with no_hang():
        report = await aw.dispatch(echo, list(range(2_000)), workers=16)
    text = repr(report)
    assert "completed=2000" in text
    assert len(text) < 400


async def test_a_slow_async_on_done_holds_its_task_slot() -> None:
    # Callbacks must not pile up behind fast tasks: in flight = tasks + their callbacks.
    busy = 0
    most = 0

    async def slow_done(task_id: int, config: Any, result: Any, log: aw.TaskLog) -> Any:
        nonlocal busy, most
        busy += 1
        most = max(most, busy)
        await asyncio.sleep(0.001)
        busy -= 1
        return result

    with no_hang():
        report = await aw.dispatch(echo, 60, workers=3, on_done=slow_done)
    assert report.completed == 60
    assert most <= 3
