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
from collections.abc import Iterator
from typing import Any

import pytest

import _dispatch_funcs as df
import asyncworkers as aw
from _helpers import no_hang, settle


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
