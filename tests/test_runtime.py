"""Runtime: construction, submitting, priorities, control, shutdown, cancellation, failures.

Every wait on the runtime is guarded by ``no_hang()``; synchronisation is by events, by
awaiting jobs, and by ``anyio.wait_all_tasks_blocked()`` (``all_blocked()``, to see that
something did not happen), never by sleeping or counting loop turns. The few real timeouts
below are the feature under test (a job's ``timeout=``, ``join(timeout=)``,
``shutdown(timeout=)``), and each one is meant to fire.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import re
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

import asyncworkers as aw
from _helpers import (
    Blocker,
    Boom,
    Failing,
    all_blocked,
    double,
    fail,
    forever,
    no_hang,
    start_timeouts,
    state,
    state_of,
    until_blocked,
    wait_in_thread,
)
from asyncworkers._core import _runtime as runtime_module
from asyncworkers._core._metrics import Recorder


def plain_add(a: int, b: int) -> int:
    return a + b


# -- construction and bad input ---------------------------------------------------------


async def test_defaults_and_repr() -> None:
    rt = aw.Runtime()
    assert "state=new" in repr(rt)
    assert rt.metrics().workers == 0
    async with rt:
        text = repr(rt)
        assert "state=running" in text
        assert "workers=100" in text
        assert "paused=False" in text
        assert rt.metrics().workers == 100
        assert not rt.paused
    assert "state=closed" in repr(rt)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"workers": 0}, ValueError, r"workers must be >= 1, got 0"),
        ({"workers": -3}, ValueError, r"workers must be >= 1, got -3"),
        ({"workers": 1.5}, TypeError, r"workers must be an int, got 1\.5"),
        ({"workers": True}, TypeError, r"workers must be an int, got True"),
        ({"workers": "4"}, TypeError, r"workers must be an int, got '4'"),
        ({"threads": 0}, ValueError, r"threads must be >= 1, got 0"),
        ({"threads": None}, TypeError, r"threads must be an int, got None"),
        ({"processes": 0}, ValueError, r"processes must be >= 1, got 0"),
        ({"processes": 2.0}, TypeError, r"processes must be an int, got 2\.0"),
        ({"max_pending": 0}, ValueError, r"max_pending must be >= 1, got 0"),
        ({"max_pending": -1}, ValueError, r"max_pending must be >= 1, got -1"),
        ({"max_pending": "10"}, TypeError, r"max_pending must be an int, got '10'"),
    ],
)
def test_bad_constructor_arguments(
    kwargs: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        aw.Runtime(**kwargs)


@pytest.mark.parametrize(
    ("options", "error", "pattern"),
    [
        ({"timeout": 0}, ValueError, r"timeout must be > 0, got 0"),
        ({"timeout": -1.5}, ValueError, r"timeout must be > 0, got -1\.5"),
        ({"timeout": math.nan}, ValueError, r"timeout must be > 0, got nan"),
        ({"timeout": "5"}, TypeError, r"timeout must be a number of seconds, got '5'"),
        ({"timeout": True}, TypeError, r"timeout must be a number of seconds, got True"),
        ({"priority": "high"}, TypeError, r"priority must be an int, got 'high'"),
        ({"priority": True}, TypeError, r"priority must be an int, got True"),
        ({"priority": 1.0, "name": "x"}, TypeError, r"priority must be an int, got 1\.0"),
        ({"retry": 3}, TypeError, r"retry must be a Retry or None, got 3"),
        ({"token": "tok"}, TypeError, r"token must be a CancellationToken or None, got 'tok'"),
        ({"name": 5}, TypeError, r"name must be a str or None, got 5"),
        ({"metadata": [1]}, TypeError, r"metadata must be a Mapping or None, got \[1\]"),
        ({"callback": 7}, TypeError, r"callback must be callable, got 7"),
        ({"kind": "fiber"}, ValueError, r"kind must be one of .*, got 'fiber'"),
        ({"colour": "red"}, TypeError, r"unknown option\(s\) \['colour'\]"),
    ],
)
async def test_bad_options_fail_at_submit_and_leave_no_trace(
    options: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    async with aw.Runtime(1) as rt:
        with pytest.raises(error, match=pattern):
            rt.submit_nowait(double, 1, **options)
        with pytest.raises(error, match=pattern):
            await rt.submit(double, 1, **options)
        with pytest.raises(error, match=pattern):
            await rt.run(double, 1, **options)
        m = rt.metrics()
        assert (m.submitted, m.pending, m.finished) == (0, 0, 0)
        with no_hang():
            assert await rt.run(double, 2) == 4  # and the runtime is fine


@pytest.mark.parametrize("fn", [42, "double", None, [double]])
async def test_non_callable_is_a_type_error_naming_it(fn: Any) -> None:
    async with aw.Runtime(1) as rt:
        with pytest.raises(TypeError, match=r"callable.*" + re.escape(repr(fn))):
            rt.submit_nowait(fn)
        with pytest.raises(TypeError, match="callable"):
            rt.submit_nowait(fn, name="with options")
        with pytest.raises(TypeError, match="callable"):
            rt.enqueue(aw.WorkUnit(fn))
        with pytest.raises(TypeError, match="callable"):
            async for _ in rt.map(fn, [1]):
                pass  # pragma: no cover
        assert rt.metrics().submitted == 0


async def test_enqueue_checks_its_input() -> None:
    async with aw.Runtime(1) as rt:
        with pytest.raises(TypeError, match=r"enqueue\(\) needs a WorkUnit, got 3"):
            rt.enqueue(3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"args=.*must be a tuple, got \[1\]"):
            rt.enqueue(aw.WorkUnit(double, args=[1]))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"kwargs=.*must be a mapping, got \['x'\]"):
            rt.enqueue(aw.WorkUnit(double, kwargs=["x"]))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"timeout must be > 0, got 0"):
            rt.enqueue(aw.WorkUnit(double, args=(1,), timeout=0))
        assert rt.metrics().submitted == 0


async def test_control_calls_check_their_arguments() -> None:
    async with aw.Runtime(2) as rt:
        with pytest.raises(ValueError, match=r"workers must be >= 1, got 0"):
            rt.resize(0)
        with pytest.raises(TypeError, match=r"workers must be an int, got '3'"):
            rt.resize("3")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"join\(timeout=\.\.\.\) must be >= 0, got -1"):
            await rt.join(timeout=-1)
        with pytest.raises(TypeError, match=r"join\(timeout=\.\.\.\) must be a number"):
            await rt.join(timeout="1")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"shutdown\(timeout=\.\.\.\) must be >= 0, got -2"):
            await rt.shutdown(timeout=-2)
        with pytest.raises(ValueError, match=r"window must be >= 1, got 0"):
            async for _ in rt.map(double, [1], window=0):
                pass  # pragma: no cover
        with pytest.raises(TypeError, match=r"on_complete\(\) needs a callable, got 5"):
            rt.on_complete(5)  # type: ignore[arg-type]
        assert rt.metrics().workers == 2  # nothing changed
        with no_hang():
            assert await rt.run(double, 3) == 6  # the bad shutdown call shut nothing down


async def test_submitting_before_start_is_an_error() -> None:
    rt = aw.Runtime(1)
    with pytest.raises(RuntimeError, match="not started"):
        rt.submit_nowait(double, 1)
    with pytest.raises(RuntimeError, match="not started"):
        rt.enqueue(aw.WorkUnit(double, args=(1,)))


async def test_a_runtime_starts_only_once() -> None:
    rt = aw.Runtime(1)
    async with rt:
        pass
    with pytest.raises(RuntimeError, match="only once"):
        await rt.__aenter__()


async def test_shutdown_of_a_never_started_runtime() -> None:
    rt = aw.Runtime(1)
    await rt.shutdown()
    await rt.shutdown()  # idempotent
    with pytest.raises(aw.RuntimeClosed):
        rt.submit_nowait(double, 1)
    with pytest.raises(RuntimeError, match="only once"):
        await rt.__aenter__()


# -- submitting and running -------------------------------------------------------------


async def test_submit_nowait_submit_and_run() -> None:
    async with aw.Runtime(2) as rt:
        a = rt.submit_nowait(double, 1)
        b = await rt.submit(double, 2, name="b")
        c = rt.submit_nowait(plain_add, 3, 4)  # a plain function: runs in a thread
        with no_hang():
            assert await rt.run(double, 5) == 10
            assert [await a, await b, await c] == [2, 4, 7]
        assert c.kind == "thread"
        assert b.name == "b"
        with pytest.raises(Boom, match="ran and failed"):
            await rt.run(fail, "ran and failed")
        m = rt.metrics()
        assert (m.submitted, m.completed, m.failed) == (5, 4, 1)


async def test_a_plain_function_never_runs_on_the_event_loop() -> None:
    loop_thread = threading.get_ident()

    def where() -> int:
        return threading.get_ident()

    async with aw.Runtime(1) as rt:
        with no_hang():
            assert await rt.run(where) != loop_thread
            job = rt.submit_nowait(where, kind="thread")
            assert await job != loop_thread


async def test_enqueue_work_unit_with_kwargs_and_callback() -> None:
    results: list[object] = []

    async def greet(name: str, *, punctuation: str = ".") -> str:
        return f"hello {name}{punctuation}"

    async with aw.Runtime(1) as rt:
        job = rt.enqueue(
            aw.WorkUnit(
                greet,
                args=("ada",),
                kwargs={"punctuation": "!"},
                callback=results.append,
                name="greeting",
                priority=aw.Priority.HIGH,
                metadata={"k": 1},
            )
        )
        assert job.name == "greeting"
        assert job.priority == aw.Priority.HIGH
        assert job.metadata == {"k": 1}
        with no_hang():
            assert await job == "hello ada!"
        assert results == ["hello ada!"]
        # a unit without kwargs or options takes the plain path, same result
        plain: aw.Job[str] = rt.enqueue(aw.WorkUnit(greet, args=("bob",)))
        with no_hang():
            assert await plain == "hello bob."
        assert results == ["hello ada!"]  # that unit had no callback


async def test_callback_runs_once_on_success_only() -> None:
    seen: list[object] = []
    async with aw.Runtime(1) as rt:
        ok = rt.submit_nowait(double, 4, callback=seen.append)
        bad = rt.submit_nowait(fail, callback=seen.append)
        rt.pause()
        gone = rt.submit_nowait(double, 5, callback=seen.append)
        gone.cancel()
        rt.resume()
        with no_hang():
            assert await rt.join()
        assert (ok.state, bad.state, gone.state) == (
            aw.JobState.COMPLETED,
            aw.JobState.FAILED,
            aw.JobState.CANCELLED,
        )
        assert seen == [8]


async def test_submit_waits_for_room_when_max_pending_is_reached() -> None:
    holder = Blocker()
    async with aw.Runtime(1, max_pending=1) as rt:
        running = rt.submit_nowait(holder.run)
        with no_hang():
            await holder.started.wait()
        queued = rt.submit_nowait(double, 1)  # running jobs do not count: room for one
        waiting = asyncio.create_task(rt.submit(double, 2))
        await until_blocked(waiting)
        assert rt.metrics().submitted == 2
        holder.release.set()  # running ends, `queued` starts, room for one more
        with no_hang():
            late = await waiting
            assert await late == 4
            assert await queued == 2
            assert await running == 0


async def test_cancelling_a_queued_job_makes_room() -> None:
    holder = Blocker()
    async with aw.Runtime(1, max_pending=1) as rt:
        rt.submit_nowait(holder.run)
        with no_hang():
            await holder.started.wait()
        queued = rt.submit_nowait(double, 1)
        waiting = asyncio.create_task(rt.submit(double, 2))
        await until_blocked(waiting)
        assert queued.cancel() is True
        with no_hang():
            late = await waiting
        assert late.state is aw.JobState.PENDING
        holder.release.set()
        with no_hang():
            assert await late == 4


async def test_a_waiter_cancelled_as_it_is_woken_hands_the_room_on() -> None:
    holder = Blocker()
    async with aw.Runtime(1, max_pending=1) as rt:
        rt.submit_nowait(holder.run)
        with no_hang():
            await holder.started.wait()
        queued = rt.submit_nowait(double, 1)
        first = asyncio.create_task(rt.submit(double, 2))
        await until_blocked(first)
        second = asyncio.create_task(rt.submit(double, 3))
        await until_blocked(second)
        queued.cancel()  # wakes `first`...
        first.cancel()  # ...which is cancelled before it runs: `second` gets the room
        with no_hang():
            job = await second
        with pytest.raises(asyncio.CancelledError):
            await first
        holder.release.set()
        with no_hang():
            assert await job == 6
            assert await rt.join()
        assert rt.metrics().submitted == 3


async def test_queue_full_from_submit_nowait_and_enqueue() -> None:
    async with aw.Runtime(1, max_pending=2) as rt:
        rt.pause()
        jobs = [rt.submit_nowait(double, i) for i in range(2)]
        with pytest.raises(aw.QueueFull, match="max_pending=2"):
            rt.submit_nowait(double, 9)
        with pytest.raises(aw.QueueFull, match="max_pending=2"):
            rt.submit_nowait(double, 9, priority=aw.Priority.HIGHEST, name="urgent")
        with pytest.raises(aw.QueueFull, match="max_pending=2"):
            rt.enqueue(aw.WorkUnit(double, args=(9,)))
        assert isinstance(aw.QueueFull("x"), aw.AsyncworkersError)
        m = rt.metrics()
        assert (m.submitted, m.pending) == (2, 2)
        rt.resume()
        with no_hang():
            assert [await job for job in jobs] == [0, 2]


# -- map ----------------------------------------------------------------------------------


async def test_map_yields_in_input_order_even_when_jobs_finish_out_of_order() -> None:
    finished: list[int] = []
    ended = [asyncio.Event() for _ in range(10)]

    async def after_the_next_one(i: int) -> int:
        if i + 1 < len(ended):  # each item waits for the next: they end in reverse order
            await ended[i + 1].wait()
        finished.append(i)
        ended[i].set()
        return i * i

    async with aw.Runtime(10) as rt:
        with no_hang():
            results = [value async for value in rt.map(after_the_next_one, range(10), window=10)]
    assert results == [i * i for i in range(10)]
    assert finished == list(reversed(range(10)))  # the order really was restored


async def test_map_keeps_at_most_window_jobs_in_flight() -> None:
    async with aw.Runtime(4) as rt:
        in_flight: list[int] = []
        consumed = 0
        with no_hang():
            async for value in rt.map(double, range(20), window=3):
                consumed += 1
                in_flight.append(rt.metrics().submitted - consumed + 1)
                assert value == 2 * (consumed - 1)
        assert consumed == 20
        assert max(in_flight) == 3


async def test_map_over_an_async_iterable_with_options() -> None:
    async def numbers() -> AsyncIterator[int]:
        for i in range(5):
            yield i

    async with aw.Runtime(2) as rt:
        seen: list[aw.Job[Any]] = []
        rt.on_complete(seen.append)
        with no_hang():
            results = [v async for v in rt.map(double, numbers(), priority=7, name="m")]
        assert results == [0, 2, 4, 6, 8]
        assert {(job.priority, job.name) for job in seen} == {(7, "m")}


async def test_map_over_an_endless_iterable_cancels_what_is_in_flight_when_closed() -> None:
    gate = asyncio.Event()

    async def gated(i: int) -> int:
        if i >= 3:
            await gate.wait()
        return i

    async with aw.Runtime(2) as rt:
        got: list[int] = []
        with no_hang():
            async with contextlib.aclosing(rt.map(gated, itertools.count(), window=4)) as it:
                async for value in it:
                    got.append(value)
                    if value == 2:
                        break
            assert await rt.join()
        assert got == [0, 1, 2]
        m = rt.metrics()
        assert m.submitted == 3 + 4 - 1  # three consumed, the window refilled to four
        assert m.completed == 3
        assert m.cancelled == m.submitted - 3


async def test_map_raises_the_first_failure_and_cancels_the_rest() -> None:
    gate = asyncio.Event()

    async def maybe_fail(i: int) -> int:
        if i == 1:
            raise Boom(f"item {i}")
        await gate.wait()
        return i

    async with aw.Runtime(4) as rt:
        with no_hang():
            with pytest.raises(Boom, match="item 1"):
                async for _ in rt.map(maybe_fail, [1, 2, 3, 4]):
                    pass  # pragma: no cover
            assert await rt.join()
        m = rt.metrics()
        assert (m.failed, m.cancelled, m.completed) == (1, 3, 0)


# -- priorities, pause, resize ----------------------------------------------------------


async def test_one_worker_runs_in_priority_order_fifo_within_a_level() -> None:
    order: list[int] = []

    async def record(i: int) -> None:
        order.append(i)

    priorities = [2, 1, 3, 2, 4, 1, 7, -1, 3, 2, 0]
    async with aw.Runtime(1) as rt:
        rt.pause()
        for i, priority in enumerate(priorities):
            rt.submit_nowait(record, i, priority=priority)
        with no_hang():
            await all_blocked()
            assert order == []
            rt.resume()
            assert await rt.join()
    expected = sorted(range(len(priorities)), key=lambda i: (-priorities[i], i))
    assert order == expected


async def test_a_higher_priority_job_submitted_later_overtakes_the_queue() -> None:
    holder = Blocker()
    order: list[str] = []

    async def record(tag: str) -> None:
        order.append(tag)

    async with aw.Runtime(1) as rt:
        rt.submit_nowait(holder.run)
        with no_hang():
            await holder.started.wait()
        rt.submit_nowait(record, "normal-1")
        rt.submit_nowait(record, "low", priority=aw.Priority.LOW)
        rt.submit_nowait(record, "normal-2")
        rt.submit_nowait(
            record, "urgent", priority=aw.Priority.HIGHEST, token=aw.CancellationToken()
        )
        holder.release.set()
        with no_hang():
            assert await rt.join()
    assert order == ["urgent", "normal-1", "normal-2", "low"]


async def test_pause_keeps_running_jobs_and_holds_new_ones() -> None:
    holder = Blocker()
    async with aw.Runtime(2) as rt:
        running = rt.submit_nowait(holder.run, 1)
        with no_hang():
            await holder.started.wait()
        rt.pause()
        assert rt.paused
        assert "paused=True" in repr(rt)
        held = rt.submit_nowait(double, 2)
        await all_blocked()
        assert held.state is aw.JobState.PENDING  # a free worker, but paused
        holder.release.set()
        with no_hang():
            assert await running == 1  # running jobs go on
        await all_blocked()
        assert held.state is aw.JobState.PENDING
        assert not await rt.join(timeout=0)
        rt.resume()
        assert not rt.paused
        with no_hang():
            assert await held == 4
        rt.resume()  # resuming a running runtime is harmless


async def test_resize_up_runs_more_jobs_at_once() -> None:
    blockers = [Blocker() for _ in range(3)]
    async with aw.Runtime(1) as rt:
        jobs = [rt.submit_nowait(b.run, i) for i, b in enumerate(blockers)]
        with no_hang():
            await blockers[0].started.wait()
        await all_blocked()
        assert state_of(jobs) == [aw.JobState.RUNNING, aw.JobState.PENDING, aw.JobState.PENDING]
        rt.resize(3)
        with no_hang():
            for b in blockers:
                await b.started.wait()
        m = rt.metrics()
        assert (m.workers, m.running, m.pending) == (3, 3, 0)
        for b in blockers:
            b.release.set()
        with no_hang():
            assert [await job for job in jobs] == [0, 1, 2]


async def test_resize_down_lets_running_jobs_finish_then_runs_fewer() -> None:
    blockers = [Blocker() for _ in range(3)]
    async with aw.Runtime(3) as rt:
        jobs = [rt.submit_nowait(b.run, i) for i, b in enumerate(blockers)]
        with no_hang():
            for b in blockers:
                await b.started.wait()
        rt.resize(1)
        await all_blocked()
        assert rt.metrics().workers == 3  # surplus workers leave after their current job
        assert state_of(jobs) == [aw.JobState.RUNNING] * 3
        for b in blockers:
            b.release.set()
        with no_hang():
            assert await rt.join()
        await all_blocked()
        assert rt.metrics().workers == 1
        later = [Blocker() for _ in range(2)]
        more = [rt.submit_nowait(b.run) for b in later]
        with no_hang():
            await later[0].started.wait()
        await all_blocked()
        assert state_of(more) == [aw.JobState.RUNNING, aw.JobState.PENDING]
        later[0].release.set()
        later[1].release.set()
        with no_hang():
            assert await rt.join()


async def test_resize_down_of_idle_workers() -> None:
    async with aw.Runtime(4) as rt:
        rt.resize(2)
        await all_blocked()
        assert rt.metrics().workers == 2
        rt.resize(2)
        rt.resize(5)
        await all_blocked()
        assert rt.metrics().workers == 5
        with no_hang():
            assert [v async for v in rt.map(double, range(10))] == [2 * i for i in range(10)]


async def test_resize_before_start_sets_the_worker_count() -> None:
    rt = aw.Runtime(1)
    rt.resize(3)
    async with rt:
        assert rt.metrics().workers == 3


async def test_the_fast_path_makes_the_same_handle_as_job_init() -> None:
    # submit_nowait inlines Job.__init__ for a plain job: every field it sets must match.
    async with aw.Runtime(1) as rt:
        rt.pause()
        fast = rt.submit_nowait(double, 1, priority=3)
        slow: aw.Job[int] = rt.enqueue(aw.WorkUnit(double, args=(1,), priority=3))
        for name in aw.Job.__slots__:
            if name in ("_started_at", "_finished_at"):
                assert not hasattr(fast, name)
                assert not hasattr(slow, name)
            elif name in ("id", "_queued_at"):
                assert type(getattr(fast, name)) is type(getattr(slow, name))
            elif name == "_opts":
                assert fast._opts is slow._opts
            else:
                assert getattr(fast, name) == getattr(slow, name), name
        rt.resume()
        with no_hang():
            assert [await fast, await slow] == [2, 2]


# -- workers start as jobs come ----------------------------------------------------------


def worker_tasks() -> int:
    """The runtime's worker coroutines alive in this loop now, counted by their task name."""
    return sum(task.get_name() == "asyncworkers-worker" for task in asyncio.all_tasks())


async def test_a_huge_worker_cap_starts_workers_only_for_the_jobs_that_came() -> None:
    # Entering used to start every worker at once: 10**6 of them blocked the loop for over
    # a minute and took gigabytes; now entering starts none and a job starts one.
    async with aw.Runtime(workers=10**6) as rt:
        assert worker_tasks() == 0
        assert rt.metrics().workers == 10**6  # the cap
        with no_hang():
            assert await rt.run(double, 21) == 42
        assert (worker_tasks(), rt.metrics().worker_tasks) == (1, 1)
        blockers = [Blocker() for _ in range(3)]
        jobs = [rt.submit_nowait(b.run, i) for i, b in enumerate(blockers)]
        with no_hang():
            for b in blockers:
                await b.started.wait()  # all three at once: a worker per job in flight
        assert worker_tasks() == 3  # the idle one took the first, two more started
        for b in blockers:
            b.release.set()
        with no_hang():
            assert [await job for job in jobs] == [0, 1, 2]
    assert worker_tasks() == 0


async def test_a_burst_of_quick_jobs_starts_no_more_workers_than_the_cap() -> None:
    async with aw.Runtime(workers=4) as rt:
        jobs = [rt.submit_nowait(double, i) for i in range(100)]
        assert worker_tasks() == rt.metrics().worker_tasks == 4  # the cap, not a task per job
        with no_hang():
            assert [await job for job in jobs] == [2 * i for i in range(100)]
        assert worker_tasks() == 4


async def test_idle_workers_above_the_floor_end_and_the_floor_stays() -> None:
    floor = runtime_module._IDLE_FLOOR
    count = floor + 12
    async with aw.Runtime(workers=100) as rt:
        blockers = [Blocker() for _ in range(count)]
        jobs = [rt.submit_nowait(b.run) for b in blockers]
        with no_hang():
            for b in blockers:
                await b.started.wait()
            for b in blockers:
                b.release.set()
            assert await rt.join()
        await all_blocked()
        assert worker_tasks() == count  # all idle now, within the grace period
        assert all(job.state is aw.JobState.COMPLETED for job in jobs)
        # The reaper's ticks, called rather than waited for (each is _IDLE_GRACE apart): the
        # first ends those idle since the reaper started looking, the second the rest.
        for _ in range(2):
            rt._reap_idle()
            await all_blocked()
        assert worker_tasks() == rt.metrics().worker_tasks == floor
        assert rt.metrics().workers == 100  # the cap is unchanged
        with no_hang():  # the survivors (and new workers) still serve
            assert [v async for v in rt.map(double, range(50))] == [2 * i for i in range(50)]


async def test_a_worker_reaped_while_work_arrives_loses_no_job() -> None:
    floor = runtime_module._IDLE_FLOOR
    async with aw.Runtime(workers=floor + 4) as rt:
        blockers = [Blocker() for _ in range(floor + 4)]
        for b in blockers:
            rt.submit_nowait(b.run)
        with no_hang():
            for b in blockers:
                await b.started.wait()
            for b in blockers:
                b.release.set()
            assert await rt.join()
        await all_blocked()
        rt._reap_idle()
        rt._reap_idle()  # the leavers have been told, and have not run yet
        job = rt.submit_nowait(double, 5)  # must find a live worker, or start one
        with no_hang():
            assert await job == 10
        await all_blocked()
        assert worker_tasks() == rt.metrics().worker_tasks


async def test_resume_and_resize_start_the_workers_the_queue_needs() -> None:
    async with aw.Runtime(workers=1) as rt:
        rt.pause()
        blockers = [Blocker() for _ in range(3)]
        jobs = [rt.submit_nowait(b.run, i) for i, b in enumerate(blockers)]
        await all_blocked()
        assert worker_tasks() == 0  # paused: nothing can run, no worker is needed
        rt.resize(3)
        await all_blocked()
        assert worker_tasks() == 0
        rt.resume()
        with no_hang():
            for b in blockers:
                await b.started.wait()
        assert worker_tasks() == 3
        for b in blockers:
            b.release.set()
        with no_hang():
            assert [await job for job in jobs] == [0, 1, 2]


async def test_dispatch_starts_no_more_workers_than_tasks() -> None:
    seen: list[int] = []

    async def task(task_id: int, config: Any, item: Any, meta: dict[str, Any]) -> int:
        seen.append(worker_tasks())
        await asyncio.sleep(0)
        return task_id

    with no_hang():
        report = await aw.dispatch(task, 3, workers=10**6)
    assert report.results == [1, 2, 3]
    assert max(seen) <= 3


# -- join ---------------------------------------------------------------------------------


async def test_join() -> None:
    holder = Blocker()
    async with aw.Runtime(2) as rt:
        with no_hang():
            assert await rt.join() is True  # nothing submitted
        job = rt.submit_nowait(holder.run)
        with no_hang():
            await holder.started.wait()
        assert await rt.join(timeout=0.01) is False
        assert job.state is aw.JobState.RUNNING  # join never cancels anything
        joiner = asyncio.create_task(rt.join())
        await until_blocked(joiner)
        holder.release.set()
        with no_hang():
            assert await joiner is True
        assert job.done()


async def test_join_waits_for_jobs_backing_off_before_a_retry() -> None:
    attempts: list[int] = []

    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 2:
            raise Boom("first try")
        return "ok"

    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(flaky, retry=aw.Retry(attempts=2, backoff=0.01))
        with no_hang():
            assert await rt.join() is True
        assert job.result() == "ok"
        assert job.attempts == 2


# -- shutdown ----------------------------------------------------------------------------


async def test_shutdown_wait_drains_queued_and_running_jobs() -> None:
    holder = Blocker()
    async with aw.Runtime(1) as rt:
        running = rt.submit_nowait(holder.run, 1)
        with no_hang():
            await holder.started.wait()
        queued = [rt.submit_nowait(double, i) for i in range(3)]
        closing = asyncio.create_task(rt.shutdown(wait=True))
        await until_blocked(closing)
        with pytest.raises(aw.RuntimeClosed, match="closing"):
            rt.submit_nowait(double, 9)  # no new work while draining
        holder.release.set()
        with no_hang():
            await closing
        assert running.result() == 1
        assert [job.result() for job in queued] == [0, 2, 4]
        assert "state=closed" in repr(rt)


async def test_shutdown_cancel_pending_lets_running_jobs_finish() -> None:
    holder = Blocker()
    async with aw.Runtime(1) as rt:
        running = rt.submit_nowait(holder.run, 1)
        with no_hang():
            await holder.started.wait()
        queued = [rt.submit_nowait(double, i) for i in range(3)]
        closing = asyncio.create_task(rt.shutdown(wait=True, cancel_pending=True))
        await until_blocked(closing)
        assert state_of(queued) == [aw.JobState.CANCELLED] * 3
        assert running.state is aw.JobState.RUNNING
        holder.release.set()
        with no_hang():
            await closing
        assert running.result() == 1
        assert all(job.attempts == 0 for job in queued)
        error = queued[0].exception()
        assert isinstance(error, aw.JobCancelled)
        assert error.reason == "cancelled by shutdown"


async def test_shutdown_without_wait_cancels_everything() -> None:
    holder = Blocker()
    async with aw.Runtime(1) as rt:
        running = rt.submit_nowait(holder.run)
        with no_hang():
            await holder.started.wait()
        queued = rt.submit_nowait(double, 1)
        with no_hang():
            await rt.shutdown(wait=False)
        assert running.state is aw.JobState.CANCELLED
        assert queued.state is aw.JobState.CANCELLED
        assert holder.saw_cancel  # the coroutine was really stopped
        assert not holder.returned
        m = rt.metrics()
        assert (m.cancelled, m.running, m.pending) == (2, 0, 0)


async def test_shutdown_timeout_ends_the_drain_and_cancels_what_is_left() -> None:
    holder, scoped = Blocker(), Blocker()
    async with aw.Runtime(2) as rt:
        stuck = rt.submit_nowait(holder.run)  # inline
        stuck_scoped = rt.submit_nowait(scoped.run, timeout=60)  # in a cancel scope
        with no_hang():
            await holder.started.wait()
            await scoped.started.wait()
        queued = rt.submit_nowait(double, 1)
        with no_hang():
            await rt.shutdown(wait=True, timeout=0.02)
        # when shutdown returns, every job has ended
        assert state_of([stuck, stuck_scoped, queued]) == [aw.JobState.CANCELLED] * 3
        assert holder.saw_cancel
        assert scoped.saw_cancel
        m = rt.metrics()
        assert (m.cancelled, m.running, m.pending, m.finished) == (3, 0, 0, 3)


async def test_shutdown_with_a_timeout_that_is_not_needed() -> None:
    holder = Blocker()
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(holder.run, 5)
        with no_hang():
            await holder.started.wait()
        closing = asyncio.create_task(rt.shutdown(timeout=30))
        await until_blocked(closing)
        holder.release.set()
        with no_hang():
            await closing
        assert job.result() == 5


async def test_shutdown_is_idempotent_and_later_calls_wait_for_the_first() -> None:
    holder = Blocker()
    rt = aw.Runtime(1)
    async with rt:
        job = rt.submit_nowait(holder.run, 3)
        with no_hang():
            await holder.started.wait()
        first = asyncio.create_task(rt.shutdown())
        await until_blocked(first)
        second = asyncio.create_task(rt.shutdown(wait=False))  # does not override the first
        await until_blocked(second)
        assert job.state is aw.JobState.RUNNING
        holder.release.set()
        with no_hang():
            await first
            await second
        assert job.result() == 3
        with no_hang():
            await rt.shutdown()  # after the end: returns at once
    # leaving the block after an explicit shutdown did nothing more
    assert rt.metrics().completed == 1


async def test_shutdown_wait_resumes_a_paused_runtime() -> None:
    async with aw.Runtime(2) as rt:
        rt.pause()
        jobs = [rt.submit_nowait(double, i) for i in range(4)]
        with no_hang():
            await rt.shutdown(wait=True)
        assert not rt.paused
        assert [job.result() for job in jobs] == [0, 2, 4, 6]


async def test_leaving_the_block_drains_a_paused_runtime() -> None:
    async with aw.Runtime(1) as rt:
        rt.pause()
        job = rt.submit_nowait(double, 21)
    assert job.result() == 42


async def test_runtime_closed_after_shutdown() -> None:
    async with aw.Runtime(1) as rt:
        await rt.shutdown()
        with pytest.raises(aw.RuntimeClosed, match="closed"):
            rt.submit_nowait(double, 1)
        with pytest.raises(aw.RuntimeClosed):
            await rt.submit(double, 1)
        with pytest.raises(aw.RuntimeClosed):
            await rt.run(double, 1)
        with pytest.raises(aw.RuntimeClosed):
            rt.enqueue(aw.WorkUnit(double, args=(1,)))
        with pytest.raises(aw.RuntimeClosed):
            async for _ in rt.map(double, [1]):
                pass  # pragma: no cover
        await all_blocked()
        assert rt.metrics().workers == 0
        assert rt.metrics().submitted == 0


async def test_a_submit_waiting_for_room_gets_runtime_closed_at_shutdown() -> None:
    async with aw.Runtime(1, max_pending=1) as rt:
        rt.pause()
        queued = rt.submit_nowait(double, 1)
        waiting = asyncio.create_task(rt.submit(double, 2))
        await until_blocked(waiting)
        with no_hang():
            await rt.shutdown(wait=True)
            with pytest.raises(aw.RuntimeClosed):
                await waiting
        assert queued.result() == 2


# -- timeouts -----------------------------------------------------------------------------


async def test_a_timed_out_job_fails_with_job_timeout() -> None:
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(forever, timeout=0.01, name="slow")
        with no_hang():
            assert await job.wait() is aw.JobState.FAILED
        error = job.exception()
        assert isinstance(error, aw.JobTimeout)
        assert isinstance(error, TimeoutError)
        assert "slow" in str(error)
        assert "0.01" in str(error)
        with pytest.raises(aw.JobTimeout):
            await job
        assert job.attempts == 1
        m = rt.metrics()
        assert (m.failed, m.cancelled) == (1, 0)
        with no_hang():
            assert await rt.run(double, 1, timeout=30) == 2  # a job in time completes


async def test_a_timeout_is_retried_with_retry() -> None:
    async def slow_twice() -> int:
        job = aw.current_job()
        assert job is not None
        if job.attempts < 3:
            await forever()
        return job.attempts

    async with aw.Runtime(1) as rt:
        with no_hang():
            assert await rt.run(slow_twice, timeout=0.01, retry=aw.Retry(attempts=3)) == 3
            job = rt.submit_nowait(forever, timeout=0.01, retry=aw.Retry(attempts=2))
            assert await job.wait() is aw.JobState.FAILED
        assert isinstance(job.exception(), aw.JobTimeout)
        assert job.attempts == 2
        m = rt.metrics()
        assert (m.completed, m.failed, m.retried) == (1, 1, 3)


async def test_a_thread_job_times_out_at_check_cancelled() -> None:
    stopped_by: list[aw.AsyncworkersError] = []

    def spin(entered: threading.Event) -> None:
        entered.set()
        stop = threading.Event()
        for _ in range(30_000):  # a bound, so a bug fails the test instead of hanging it
            try:
                aw.check_cancelled()
            except aw.AsyncworkersError as exc:
                stopped_by.append(exc)
                raise
            stop.wait(0.001)
        raise AssertionError("the timeout never reached check_cancelled()")

    async with aw.Runtime(1) as rt:
        for timeout in start_timeouts():  # the timeout must fire after the thread started
            entered = threading.Event()
            job = rt.submit_nowait(spin, entered, timeout=timeout)
            with no_hang():
                assert await job.wait() is aw.JobState.FAILED
            assert isinstance(job.exception(), aw.JobTimeout)
            if entered.is_set():
                break
            assert stopped_by == []  # timed out before its thread started: never ran
    assert len(stopped_by) == 1
    assert isinstance(stopped_by[0], aw.JobTimeout)


# -- tokens -------------------------------------------------------------------------------


async def test_token_cancels_its_running_and_pending_jobs_only() -> None:
    token = aw.CancellationToken()
    holder, other = Blocker(), Blocker()
    started: list[int] = []

    async def record(i: int) -> int:
        started.append(i)
        return i

    async with aw.Runtime(2) as rt:
        running = rt.submit_nowait(holder.run, token=token)
        unrelated = rt.submit_nowait(other.run, 7)
        with no_hang():
            await holder.started.wait()
            await other.started.wait()
        pending = [rt.submit_nowait(record, i, token=token) for i in range(3)]
        free = rt.submit_nowait(record, 99)
        token.cancel("user pressed stop")
        assert state_of(pending) == [aw.JobState.CANCELLED] * 3  # at once
        with no_hang():
            assert await running.wait() is aw.JobState.CANCELLED
        assert holder.saw_cancel
        error = running.exception()
        assert isinstance(error, aw.JobCancelled)
        assert error.reason == "user pressed stop"
        other.release.set()
        with no_hang():
            assert await unrelated == 7
            assert await free == 99
        assert started == [99]  # the pending ones never started
        assert all(job.attempts == 0 for job in pending)
        assert not token._callbacks  # finished jobs unlink themselves


async def test_child_token_job_is_cancelled_by_the_parent() -> None:
    parent = aw.CancellationToken()
    child = parent.child()
    holder = Blocker()
    async with aw.Runtime(1) as rt:
        running = rt.submit_nowait(holder.run, token=child)
        queued = rt.submit_nowait(double, 1, token=child)
        with no_hang():
            await holder.started.wait()
        parent.cancel("parent")
        with no_hang():
            assert await running.wait() is aw.JobState.CANCELLED
        assert queued.state is aw.JobState.CANCELLED
        assert queued.attempts == 0
        error = running.exception()
        assert isinstance(error, aw.JobCancelled)
        assert error.reason == "parent"


async def test_a_job_submitted_with_a_cancelled_token_never_starts() -> None:
    token = aw.CancellationToken()
    token.cancel("too late")
    ran: list[int] = []

    async def record() -> None:
        ran.append(1)

    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(record, token=token)
        assert job.state is aw.JobState.CANCELLED
        with pytest.raises(aw.JobCancelled, match="too late"):
            await job
        with no_hang():
            assert await rt.join()
        m = rt.metrics()
        assert (m.submitted, m.cancelled, m.pending) == (1, 1, 0)
    assert ran == []


async def test_a_token_cancelled_from_another_thread_stops_a_running_job() -> None:
    token = aw.CancellationToken()
    holder = Blocker()
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(holder.run, token=token)
        with no_hang():
            await holder.started.wait()
            await anyio.to_thread.run_sync(token.cancel, "from a thread")
            assert await job.wait() is aw.JobState.CANCELLED
        assert holder.saw_cancel


async def test_a_token_cancels_a_thread_job_at_check_cancelled() -> None:
    token = aw.CancellationToken()
    entered = threading.Event()

    seen: list[str] = []

    def spin() -> str:
        entered.set()
        for _ in range(30_000):  # a bound, so a bug fails the test instead of hanging it
            try:
                aw.check_cancelled()
            except aw.JobCancelled:
                seen.append("stopped at check_cancelled")
                raise
            token.wait_blocking(timeout=0.001)
        return "not reached"

    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(spin, token=token)
        await wait_in_thread(entered)
        token.cancel("stop the thread")
        with no_hang():
            assert await job.wait() is aw.JobState.CANCELLED
        error = job.exception()
        assert isinstance(error, aw.JobCancelled)
        assert error.reason == "stop the thread"
        assert seen == ["stopped at check_cancelled"]


async def test_token_cancel_during_a_retry_backoff() -> None:
    token = aw.CancellationToken()
    failing = Failing()
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(failing.run, token=token, retry=aw.Retry(attempts=5, backoff=60))
        with no_hang():
            await failing.failed.wait()
        await all_blocked()  # the failure is handled: the job waits out its backoff
        assert job.attempts == 1
        assert state(job) is aw.JobState.PENDING  # backing off, holding no worker
        assert rt.metrics().pending == 1
        token.cancel()
        assert state(job) is aw.JobState.CANCELLED
        m = rt.metrics()
        assert (m.pending, m.retried, m.cancelled, m.failed) == (0, 1, 1, 0)


# -- job.cancel() ------------------------------------------------------------------------


async def test_cancel_a_running_job_and_the_worker_lives_on() -> None:
    holder = Blocker()
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(holder.run)
        with no_hang():
            await holder.started.wait()
        assert job.cancel("enough") is True
        assert job.cancel("again") is True  # still running: the first reason stays
        with no_hang():
            assert await job.wait() is aw.JobState.CANCELLED
        assert holder.saw_cancel
        error = job.exception()
        assert isinstance(error, aw.JobCancelled)
        assert error.reason == "enough"
        assert job.cancel() is False
        with no_hang():
            assert await rt.run(double, 4) == 8  # the single worker survived
        assert rt.metrics().workers == 1
        assert rt.metrics().worker_errors == 0


async def test_cancel_pending_running_and_finished_jobs() -> None:
    holder = Blocker()
    async with aw.Runtime(1) as rt:
        done = rt.submit_nowait(double, 1)
        with no_hang():
            await done
        running = rt.submit_nowait(holder.run)
        with no_hang():
            await holder.started.wait()
        pending = rt.submit_nowait(double, 2)
        assert done.cancel() is False
        assert pending.cancel() is True
        assert pending.state is aw.JobState.CANCELLED  # at once
        assert running.cancel() is True
        with no_hang():
            assert await rt.join()
        assert state_of([done, running, pending]) == [
            aw.JobState.COMPLETED,
            aw.JobState.CANCELLED,
            aw.JobState.CANCELLED,
        ]
        assert pending.attempts == 0
        m = rt.metrics()
        assert (m.completed, m.cancelled, m.running, m.pending) == (1, 2, 0, 0)


async def test_cancel_a_job_with_a_timeout_while_it_runs() -> None:
    holder = Blocker()
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(holder.run, timeout=30)
        with no_hang():
            await holder.started.wait()
        job.cancel("stop")
        with no_hang():
            assert await job.wait() is aw.JobState.CANCELLED  # a cancel, not a timeout
        assert isinstance(job.exception(), aw.JobCancelled)


async def test_a_job_that_swallows_its_cancellation_still_ends_cancelled() -> None:
    entered = asyncio.Event()
    went_on: list[str] = []

    async def stubborn() -> str:
        entered.set()
        try:
            await forever()
        except asyncio.CancelledError:
            went_on.append("swallowed")
        return "finished anyway"

    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(stubborn)
        with no_hang():
            await entered.wait()
        job.cancel()
        with no_hang():
            assert await job.wait() is aw.JobState.CANCELLED
            assert await rt.run(double, 1) == 2
        assert went_on == ["swallowed"]


async def test_a_job_cancelled_during_a_retry_backoff() -> None:
    failing = Failing()
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(failing.run, retry=aw.Retry(attempts=3, backoff=60))
        with no_hang():
            await failing.failed.wait()
        await all_blocked()  # the failure is handled: the job waits out its backoff
        assert job.attempts == 1
        assert state(job) is aw.JobState.PENDING
        assert job.cancel() is True
        assert state(job) is aw.JobState.CANCELLED
        with no_hang():
            assert await rt.join(timeout=5)
        assert job.attempts == 1


async def test_cancel_a_thread_job_at_check_cancelled() -> None:
    entered = threading.Event()

    def spin() -> None:
        entered.set()
        stop = threading.Event()
        for _ in range(30_000):
            aw.check_cancelled()
            stop.wait(0.001)
        raise AssertionError("the cancel never reached check_cancelled()")

    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(spin)
        await wait_in_thread(entered)
        assert job.cancel("please stop") is True
        with no_hang():
            assert await job.wait() is aw.JobState.CANCELLED
        error = job.exception()
        assert isinstance(error, aw.JobCancelled)
        assert error.reason == "please stop"


# -- JobCancelled never cancels the awaiting task -----------------------------------------


async def test_awaiting_a_cancelled_job_raises_an_exception_not_a_cancellation() -> None:
    holder = Blocker()
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(holder.run)
        with no_hang():
            await holder.started.wait()

        async def awaiter() -> str:
            with anyio.CancelScope() as scope:
                with contextlib.suppress(aw.JobCancelled):
                    await job
                await asyncio.sleep(0)  # this task is not cancelled
                task = asyncio.current_task()
                assert task is not None
                assert task.cancelling() == 0
                assert not scope.cancel_called
                return "went on"
            return "the scope swallowed something"  # pragma: no cover

        waiter = asyncio.create_task(awaiter())
        await until_blocked(waiter)
        job.cancel()
        with no_hang():
            assert await waiter == "went on"
        with pytest.raises(aw.JobCancelled):
            await rt.run(double, 1, token=_cancelled_token())
        assert not issubclass(aw.JobCancelled, asyncio.CancelledError)


def _cancelled_token() -> aw.CancellationToken:
    token = aw.CancellationToken()
    token.cancel()
    return token


# -- failures never take the runtime down -----------------------------------------------


async def test_a_failing_job_never_takes_down_the_runtime() -> None:
    async def raise_(exc: BaseException) -> None:
        raise exc

    errors: list[Exception] = [
        Boom("mine"),
        ValueError("v"),
        KeyError("k"),
        TimeoutError("job's own timeout"),
        aw.RuntimeClosed("a lie"),
    ]
    async with aw.Runtime(1) as rt:
        jobs = [rt.submit_nowait(raise_, exc) for exc in errors]
        thread_job = rt.submit_nowait(lambda: 1 // 0)
        with no_hang():
            assert await rt.run(double, 1) == 2
            assert await rt.join()
        assert [job.exception() for job in jobs] == errors
        assert state_of(jobs) == [aw.JobState.FAILED] * len(errors)
        assert isinstance(thread_job.exception(), ZeroDivisionError)
        m = rt.metrics()
        assert (m.failed, m.completed, m.workers, m.worker_errors) == (6, 1, 1, 0)


async def test_a_job_raising_job_cancelled_itself_ends_cancelled_and_is_not_retried() -> None:
    async def give_up() -> None:
        raise aw.JobCancelled("nothing to do")

    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(give_up, retry=aw.Retry(attempts=3))
        with no_hang():
            assert await job.wait() is aw.JobState.CANCELLED
        assert job.attempts == 1
        assert rt.metrics().retried == 0


@pytest.mark.parametrize("options", [{}, {"timeout": 30.0}, {"token": "token"}])
async def test_a_job_whose_own_await_raises_cancelled_error_does_not_stop_the_runtime(
    options: dict[str, Any],
) -> None:
    """A job that awaits something someone else cancelled sees CancelledError: that is the
    job's outcome, not a cancellation of the worker, the runtime or the caller's block."""
    if options.get("token"):
        options = {"token": aw.CancellationToken()}

    async def awaits_a_cancelled_task() -> None:
        victim = asyncio.ensure_future(forever())
        await asyncio.sleep(0)
        victim.cancel()
        await victim

    reached: list[str] = []
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(awaits_a_cancelled_task, **options)
        with no_hang():
            assert await job.wait() is aw.JobState.CANCELLED
            assert await rt.run(double, 5) == 10  # the single worker still serves
        reached.append("end of block")
        assert isinstance(job.exception(), aw.JobCancelled)
        m = rt.metrics()
        assert (m.workers, m.cancelled, m.completed, m.worker_errors) == (1, 1, 1, 0)
    assert reached == ["end of block"]


async def test_a_raising_callback_is_logged_and_breaks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def bad_callback(value: object) -> None:
        raise RuntimeError("callback bug")

    async with aw.Runtime(1) as rt:
        with caplog.at_level(logging.ERROR, logger="asyncworkers"), no_hang():
            job = rt.submit_nowait(double, 3, callback=bad_callback)
            assert await job == 6
            assert await rt.run(double, 1) == 2
        assert job.state is aw.JobState.COMPLETED
        assert rt.metrics().completed == 2
    assert any(
        r.exc_info is not None and "callback bug" in str(r.exc_info[1]) for r in caplog.records
    )


async def test_on_complete_sees_every_finished_job_once_and_can_be_removed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[tuple[int, aw.JobState]] = []
    also: list[int] = []
    holder = Blocker()

    def broken_hook(job: aw.Job[Any]) -> None:
        raise RuntimeError("hook bug")

    async with aw.Runtime(1) as rt:
        remove = rt.on_complete(lambda job: seen.append((job.id, job.state)))
        remove_broken = rt.on_complete(broken_hook)
        rt.on_complete(lambda job: also.append(job.id))
        with caplog.at_level(logging.ERROR, logger="asyncworkers"):
            ok = rt.submit_nowait(double, 1)
            bad = rt.submit_nowait(fail)
            running = rt.submit_nowait(holder.run)
            with no_hang():
                await holder.started.wait()
            pending = rt.submit_nowait(double, 2)
            pending.cancel()
            running.cancel()
            with no_hang():
                assert await rt.join()
        assert sorted(seen) == [
            (ok.id, aw.JobState.COMPLETED),
            (bad.id, aw.JobState.FAILED),
            (running.id, aw.JobState.CANCELLED),
            (pending.id, aw.JobState.CANCELLED),
        ]
        assert sorted(also) == sorted(job_id for job_id, _ in seen)  # the broken hook broke nothing
        assert sum("hook bug" in str(r.exc_info[1]) for r in caplog.records if r.exc_info) == 4
        remove()
        remove()  # twice is harmless
        remove_broken()
        with no_hang():
            await rt.run(double, 3)
        assert len(seen) == 4
        assert len(also) == 5


# -- inside a job -------------------------------------------------------------------------


async def test_current_job_inside_async_and_thread_jobs() -> None:
    async def who_async() -> aw.Job[Any] | None:
        return aw.current_job()

    def who_thread() -> aw.Job[Any] | None:
        return aw.current_job()

    async with aw.Runtime(2) as rt:
        for options in ({}, {"timeout": 30.0}, {"name": "x"}):
            job = rt.submit_nowait(who_async, **options)
            with no_hang():
                assert await job is job
        thread_job = rt.submit_nowait(who_thread)
        with no_hang():
            assert await thread_job is thread_job
    assert aw.current_job() is None  # nothing leaks into the caller


async def test_check_cancelled_in_async_jobs() -> None:
    token = aw.CancellationToken()
    trace: list[str] = []

    async def cancels_itself() -> None:
        job = aw.current_job()
        assert job is not None
        aw.check_cancelled()  # not cancelled: does nothing
        trace.append("checked")
        job.cancel("my own decision")
        aw.check_cancelled()  # raises without an await
        trace.append("not reached")

    async def token_inside() -> None:
        token.cancel("token says stop")
        aw.check_cancelled()
        trace.append("not reached")

    async with aw.Runtime(1) as rt:
        first = rt.submit_nowait(cancels_itself)
        second = rt.submit_nowait(token_inside, token=token)
        with no_hang():
            assert await rt.join()
    assert trace == ["checked"]
    error = first.exception()
    assert isinstance(error, aw.JobCancelled)
    assert error.reason == "my own decision"
    assert second.state is aw.JobState.CANCELLED
    error = second.exception()
    assert isinstance(error, aw.JobCancelled)
    assert error.reason == "token says stop"


async def test_a_job_that_cancels_itself_and_returns_ends_cancelled() -> None:
    async def regrets() -> int:
        job = aw.current_job()
        assert job is not None
        assert job.cancel() is True
        await asyncio.sleep(0)  # its own cancel is not injected into its own task
        return 1

    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(regrets)
        with no_hang():
            assert await job.wait() is aw.JobState.CANCELLED
            assert await rt.run(double, 2) == 4


# -- retries ------------------------------------------------------------------------------


async def test_retry_until_success() -> None:
    attempts_seen: list[int] = []
    results: list[object] = []
    finished: list[int] = []

    async def flaky() -> str:
        job = aw.current_job()
        assert job is not None
        attempts_seen.append(job.attempts)
        if job.attempts < 3:
            raise Boom(f"attempt {job.attempts}")
        return "third time lucky"

    async with aw.Runtime(1) as rt:
        rt.on_complete(lambda job: finished.append(job.id))
        job = rt.submit_nowait(flaky, retry=aw.Retry(attempts=3), callback=results.append)
        with no_hang():
            assert await job == "third time lucky"
        assert attempts_seen == [1, 2, 3]
        assert job.attempts == 3
        assert results == ["third time lucky"]
        assert finished == [job.id]  # on_complete once, for the final outcome
        m = rt.metrics()
        assert (m.submitted, m.completed, m.failed, m.retried) == (1, 1, 0, 2)


async def test_retry_gives_up_with_the_last_error() -> None:
    async def always(n: list[int]) -> None:
        n.append(1)
        raise Boom(f"attempt {len(n)}")

    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(always, [], retry=aw.Retry(attempts=2))
        with no_hang(), pytest.raises(Boom, match="attempt 2"):
            await job
        assert job.attempts == 2
        filtered = rt.submit_nowait(always, [], retry=aw.Retry(attempts=5, retry_on=(KeyError,)))
        with no_hang(), pytest.raises(Boom, match="attempt 1"):
            await filtered
        assert filtered.attempts == 1
        m = rt.metrics()
        assert (m.failed, m.retried) == (2, 1)


async def test_a_retried_job_goes_to_the_back_of_its_level() -> None:
    order: list[str] = []
    failed_once: set[str] = set()

    async def record(tag: str) -> None:
        order.append(tag)
        if tag == "a" and tag not in failed_once:
            failed_once.add(tag)
            raise Boom("retry me")

    async with aw.Runtime(1) as rt:
        rt.pause()
        rt.submit_nowait(record, "a", retry=aw.Retry(attempts=2))
        rt.submit_nowait(record, "b")
        rt.submit_nowait(record, "c")
        rt.resume()
        with no_hang():
            assert await rt.join()
    assert order == ["a", "b", "c", "a"]


# -- metrics ------------------------------------------------------------------------------


async def test_metrics_after_mixed_outcomes() -> None:
    holder = Blocker()
    token = aw.CancellationToken()

    async def flaky_once(seen: list[int]) -> int:
        seen.append(1)
        if len(seen) == 1:
            raise Boom("once")
        return len(seen)

    async with aw.Runtime(2) as rt:
        ok = [rt.submit_nowait(double, i) for i in range(4)]
        failed = [rt.submit_nowait(fail) for _ in range(2)]
        timed_out = rt.submit_nowait(forever, timeout=0.01)
        retried = rt.submit_nowait(flaky_once, [], retry=aw.Retry(attempts=2))
        running = rt.submit_nowait(holder.run, token=token)
        with no_hang():
            await holder.started.wait()
            await timed_out.wait()
            await retried.wait()
        rt.pause()
        pending = [rt.submit_nowait(double, 0) for _ in range(3)]
        late = rt.submit_nowait(double, 0, token=_cancelled_token())
        m = rt.metrics()
        assert (m.running, m.pending) == (1, 3)
        token.cancel()
        pending[0].cancel()
        rt.resume()
        with no_hang():
            assert await rt.join()
        m = rt.metrics()
        assert m.submitted == 4 + 2 + 1 + 1 + 1 + 3 + 1
        assert m.completed == 4 + 1 + 2
        assert m.failed == 2 + 1
        assert m.cancelled == 1 + 1 + 1
        assert m.retried == 1
        assert m.finished == m.submitted
        assert (m.running, m.pending, m.workers, m.worker_errors) == (0, 0, 2, 0)
        assert m.wait_time.count == 4 + 2 + 1 + 2 + 1 + 2
        assert m.run_time.count == m.wait_time.count - 1  # a retried attempt samples no run time
        others: list[aw.Job[Any]] = [timed_out, retried, running, late]
        every: list[aw.Job[Any]] = [*ok, *failed, *others]
        assert all(job.done() for job in every)
        assert retried.result() == 2


# -- cancellation reaching the runtime from outside ---------------------------------------


async def test_cancelling_the_caller_of_run_cancels_the_job() -> None:
    holder = Blocker()
    async with aw.Runtime(1) as rt:
        caller = asyncio.create_task(rt.run(holder.run))
        with no_hang():
            await holder.started.wait()
        (job,) = rt.running_jobs()
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        with no_hang():
            assert await job.wait() is aw.JobState.CANCELLED
        assert holder.saw_cancel
        reason = job.exception()
        assert isinstance(reason, aw.JobCancelled)
        assert "run()" in str(reason)


async def test_a_scope_cancelling_run_cancels_the_job() -> None:
    holder = Blocker()
    async with aw.Runtime(1) as rt:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await rt.run(holder.run)
        assert scope.cancelled_caught
        with no_hang():
            assert await rt.join()
        assert rt.metrics().cancelled == 1
        assert not holder.returned


async def test_leaving_the_block_on_an_exception_cancels_and_leaves_no_task() -> None:
    before = asyncio.all_tasks()
    holder = Blocker()
    jobs: list[aw.Job[Any]] = []

    async def body() -> None:
        async with aw.Runtime(2) as rt:
            jobs.append(rt.submit_nowait(holder.run))
            jobs.append(rt.submit_nowait(forever, timeout=30))
            await holder.started.wait()
            await all_blocked()
            rt.pause()
            jobs.append(rt.submit_nowait(double, 1))
            assert state_of(jobs) == [aw.JobState.RUNNING, aw.JobState.RUNNING, aw.JobState.PENDING]
            raise Boom("body failed")

    with no_hang(), pytest.raises(Boom, match="body failed"):
        await body()
    assert state_of(jobs) == [aw.JobState.CANCELLED] * 3
    assert holder.saw_cancel
    await all_blocked()
    assert asyncio.all_tasks() == before


async def test_cancelling_the_enclosing_scope_leaves_no_task() -> None:
    before = asyncio.all_tasks()
    holder = Blocker()
    jobs: list[aw.Job[Any]] = []
    with no_hang(), anyio.CancelScope() as scope:
        async with aw.Runtime(2) as rt:
            jobs.append(rt.submit_nowait(holder.run))
            jobs.append(rt.submit_nowait(forever, token=aw.CancellationToken()))
            await holder.started.wait()
            await all_blocked()
            rt.pause()
            jobs.append(rt.submit_nowait(double, 1))
            assert state_of(jobs) == [aw.JobState.RUNNING, aw.JobState.RUNNING, aw.JobState.PENDING]
            scope.cancel()
            await forever()
    assert scope.cancelled_caught
    assert state_of(jobs) == [aw.JobState.CANCELLED] * 3
    assert holder.saw_cancel
    await all_blocked()
    assert asyncio.all_tasks() == before


async def test_cancelling_the_task_that_holds_the_runtime_leaves_no_task() -> None:
    before = asyncio.all_tasks()
    holder = Blocker()
    jobs: list[aw.Job[Any]] = []

    async def host() -> None:
        async with aw.Runtime(1) as rt:
            jobs.append(rt.submit_nowait(holder.run))
            jobs.append(rt.submit_nowait(double, 1))
            await forever()

    task = asyncio.create_task(host())
    with no_hang():
        await holder.started.wait()
    task.cancel()
    with no_hang(), pytest.raises(asyncio.CancelledError):
        await task
    assert state_of(jobs) == [aw.JobState.CANCELLED] * 2
    await all_blocked()
    assert asyncio.all_tasks() == before


async def test_the_enclosing_task_is_not_cancelled_by_leaving_the_block_normally() -> None:
    holder = Blocker()

    async def release_soon() -> None:
        await all_blocked()
        holder.release.set()

    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(holder.run, 1)
        helper = asyncio.create_task(release_soon())
    await helper
    assert job.result() == 1
    await asyncio.sleep(0)  # this task was not cancelled by the runtime's exit
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


# -- supervision --------------------------------------------------------------------------


async def test_a_worker_that_fails_on_an_internal_bug_is_restarted_and_counted(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with aw.Runtime(1) as rt:
        original = rt._end
        calls: list[int] = []

        def broken(job: aw.Job[Any], state: aw.JobState, value: Any) -> None:
            calls.append(job.id)
            if len(calls) == 1:
                raise RuntimeError("internal bug")
            original(job, state, value)

        monkeypatch.setattr(rt, "_end", broken)
        with caplog.at_level(logging.ERROR, logger="asyncworkers"):
            victim = rt.submit_nowait(double, 1, timeout=30)
            with no_hang():
                assert await victim.wait() is aw.JobState.FAILED
        error = victim.exception()
        assert isinstance(error, RuntimeError)
        assert str(error) == "internal bug"
        with no_hang():
            assert await rt.run(double, 2, timeout=30) == 4  # the same worker slot serves on
            assert await rt.run(double, 3) == 6
        m = rt.metrics()
        assert (m.worker_errors, m.workers, m.failed, m.completed) == (1, 1, 1, 2)
        assert any("worker failed" in r.getMessage() for r in caplog.records)


async def test_a_worker_failing_between_jobs_is_restarted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A bug in what a worker does between jobs (here: trimming the latency samples as it
    # goes idle) restarts the worker's loop; no job is lost.
    original = Recorder.trim_if_due
    async with aw.Runtime(1) as rt:
        with no_hang():
            assert await rt.run(double, 0) == 0  # the worker exists, and is idle now
        await all_blocked()
        fails = [RuntimeError("bookkeeping bug")]

        def broken(recorder: Recorder) -> None:
            if fails:
                raise fails.pop()
            original(recorder)

        monkeypatch.setattr(Recorder, "trim_if_due", broken)
        with caplog.at_level(logging.ERROR, logger="asyncworkers"), no_hang():
            assert await rt.run(double, 1) == 2  # then the worker goes idle into the bug
            await all_blocked()
            assert await rt.run(double, 2) == 4
        assert fails == []
        assert rt.metrics().worker_errors == 1
        assert rt.metrics().workers == 1


async def test_jobs_that_never_suspend_do_not_starve_the_loop() -> None:
    # A worker lets the loop run every so many jobs, so other tasks (and timers, and the
    # callers awaiting results) get turns while a long run of instant jobs drains.
    async with aw.Runtime(workers=1) as rt:
        jobs = [rt.submit_nowait(double, i) for i in range(1000)]
        woke_before_the_end: dict[int, bool] = {}

        async def await_job(i: int) -> None:
            await jobs[i]
            woke_before_the_end[i] = not jobs[-1].done()

        # Callers awaiting jobs spread over the run: each must get its turn before the run
        # has drained, which needs the worker to yield at least once per 250 jobs.
        watched = [0, 250, 500, 750]
        callers = [asyncio.create_task(await_job(i)) for i in watched]
        with no_hang():
            await asyncio.gather(*callers)
        assert woke_before_the_end == dict.fromkeys(watched, True)
        assert [await job for job in jobs] == [2 * i for i in range(1000)]
