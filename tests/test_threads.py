"""Thread jobs: plain functions run in worker threads, never on the event loop.

Real threads throughout. Jobs report through ``threading`` primitives and the test side
waits on them from a helper thread (``wait_in_thread``), so the loop stays free; nothing
sleeps to synchronize. Every wait has a bound (``GUARD``) that turns a hang into a failure.
The only ``time.sleep`` calls are inside jobs, standing for blocking work. A timeout that
must fire while a thread runs is tried with growing values (``START_TIMEOUTS``), since how
soon a thread starts depends on the machine's load.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

import asyncworkers as aw
from _helpers import HANG_GUARD as GUARD
from _helpers import all_blocked, no_hang, start_timeouts, state, wait_in_thread
from asyncworkers._core._bridges import _HELD, _Held


class Gate:
    """Jobs that say when they are in, block until released, and never check for a stop."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()

    def run(self, value: int = 0) -> int:
        self.entered.set()
        released = self.release.wait(GUARD)
        self.finished.set()
        assert released, "never released"
        return value


class Cooperative:
    """A job that works in small blocking slices and calls check_cancelled() between them."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.stopped_by: list[BaseException] = []  # what check_cancelled() raised in the thread

    def run(self) -> str:
        self.entered.set()
        deadline = time.monotonic() + GUARD
        while time.monotonic() < deadline:
            try:
                aw.check_cancelled()
            except aw.AsyncworkersError as exc:
                self.stopped_by.append(exc)
                raise
            time.sleep(0.001)  # one slice of blocking work
        return "never asked to stop"


# -- where plain functions run ------------------------------------------------------------


async def test_the_loop_keeps_running_while_thread_jobs_block() -> None:
    loop_thread = threading.get_ident()
    lock = threading.Lock()
    inside = 0
    all_in = threading.Event()
    release = threading.Event()

    def blocking() -> int:
        nonlocal inside
        with lock:
            inside += 1
            if inside == 4:
                all_in.set()
        assert release.wait(GUARD), "never released"
        return threading.get_ident()

    ticks = 0
    ticked = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            if ticks == 50:
                ticked.set()
            await asyncio.sleep(0.001)

    with no_hang():
        async with aw.Runtime(workers=8, threads=4) as rt:
            jobs = [rt.submit_nowait(blocking) for _ in range(4)]
            await wait_in_thread(all_in)  # four threads are blocked now
            async with anyio.create_task_group() as tg:
                tg.start_soon(ticker)
                await ticked.wait()  # and the loop still ticks, 50 times
                tg.cancel_scope.cancel()
            assert not any(job.done() for job in jobs)
            release.set()
            idents = [await job for job in jobs]
    assert loop_thread not in idents
    assert len(set(idents)) == 4  # four threads at once


class CallableObject:
    def __call__(self) -> int:
        return threading.get_ident()


class Holder:
    def method(self) -> int:
        return threading.get_ident()


def ident_plus(offset: int, *, extra: int = 0) -> int:
    return threading.get_ident() + offset + extra


@pytest.mark.parametrize(
    "fn",
    [
        threading.get_ident,  # a builtin
        functools.partial(ident_plus, 0),
        CallableObject(),
        Holder().method,
        lambda: threading.get_ident(),
    ],
    ids=["builtin", "partial", "callable-object", "bound-method", "lambda"],
)
async def test_a_plain_callable_never_runs_on_the_loop_thread(fn: Callable[[], int]) -> None:
    loop_thread = threading.get_ident()
    with no_hang():
        async with aw.Runtime() as rt:
            job = rt.submit_nowait(fn)
            assert job.kind == "thread"
            assert await job != loop_thread
            assert await rt.run(fn, kind="thread", name="explicit") != loop_thread
            unit: aw.WorkUnit[int] = aw.WorkUnit(ident_plus, args=(0,), kwargs={"extra": 0})
            assert await rt.enqueue(unit) != loop_thread


async def test_the_thread_limit_holds() -> None:
    lock = threading.Lock()
    running = peak = 0
    entries = threading.Semaphore(0)  # released by each job that got a thread
    exits = threading.Semaphore(0)  # released by each job on its way out
    gate = threading.Semaphore(0)  # one acquire per job allowed to finish

    def job_body(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        entries.release()
        try:
            assert gate.acquire(timeout=GUARD), "never let through"
        finally:
            with lock:
                running -= 1
            exits.release()
        return i

    async def wait_for(semaphore: threading.Semaphore) -> None:
        assert await anyio.to_thread.run_sync(semaphore.acquire, True, GUARD), "timed out"

    with no_hang():
        async with aw.Runtime(workers=10, threads=2) as rt:
            jobs = [rt.submit_nowait(job_body, i) for i in range(6)]
            await wait_for(entries)
            await wait_for(entries)  # two jobs hold the two threads
            for left in range(6, 0, -1):
                gate.release()  # let one finish ...
                await wait_for(exits)
                if left > 2:
                    await wait_for(entries)  # ... and one more takes the thread it freed
            assert sorted([await job for job in jobs]) == list(range(6))
    assert peak == 2


async def test_a_thread_job_failure_keeps_its_type() -> None:
    def fail() -> None:
        raise LookupError("no such row")

    with no_hang():
        async with aw.Runtime() as rt:
            job = rt.submit_nowait(fail)
            with pytest.raises(LookupError, match="no such row"):
                await job
            assert job.state is aw.JobState.FAILED


# -- the job's context in the thread --------------------------------------------------------


async def test_current_job_and_check_cancelled_in_a_thread() -> None:
    def introspect() -> tuple[aw.Job[Any] | None, str, object]:
        job = aw.current_job()
        aw.check_cancelled()  # not cancelled: returns
        assert job is not None
        return job, job.name, job.metadata["k"]

    with no_hang():
        async with aw.Runtime() as rt:
            job = rt.submit_nowait(introspect, name="who-am-i", metadata={"k": 1})
            assert await job == (job, "who-am-i", 1)
        # Outside a job (here a thread of anyio's own) there is no job and nothing to check.
        assert await anyio.to_thread.run_sync(aw.current_job) is None
        await anyio.to_thread.run_sync(aw.check_cancelled)


# -- cancelling thread jobs -----------------------------------------------------------------


@pytest.mark.parametrize("how", ["token", "job.cancel", "shutdown"])
async def test_a_running_thread_job_stops_at_check_cancelled(
    how: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncworkers")
    body = Cooperative()
    token = aw.CancellationToken()
    with no_hang():
        async with aw.Runtime() as rt:
            job = rt.submit_nowait(body.run, token=token)
            await wait_in_thread(body.entered)
            if how == "token":
                token.cancel("token says stop")
            elif how == "job.cancel":
                assert job.cancel("job says stop") is True
            else:
                await rt.shutdown(wait=False, timeout=GUARD)
            assert await job.wait() is aw.JobState.CANCELLED
    error = job.exception()
    assert isinstance(error, aw.JobCancelled)
    expected = {"token": "token says stop", "job.cancel": "job says stop"}
    assert error.reason == expected.get(how, "cancelled by shutdown")
    # The thread itself stopped, at its check_cancelled(): nothing was abandoned.
    assert len(body.stopped_by) == 1
    assert isinstance(body.stopped_by[0], aw.JobCancelled)
    assert "abandoning" not in caplog.text


async def test_a_thread_job_timeout_raises_job_timeout_at_check_cancelled() -> None:
    with no_hang():
        async with aw.Runtime() as rt:
            for timeout in start_timeouts():  # the timeout must fire after the thread started
                body = Cooperative()
                job = rt.submit_nowait(body.run, timeout=timeout)
                assert await job.wait() is aw.JobState.FAILED
                with pytest.raises(aw.JobTimeout, match=rf"timed out after {timeout} s"):
                    await job
                if body.entered.is_set():
                    break
                assert body.stopped_by == []  # timed out before its thread started: never ran
    assert isinstance(job.exception(), TimeoutError)
    assert len(body.stopped_by) == 1
    assert isinstance(body.stopped_by[0], aw.JobTimeout)


async def test_a_thread_job_that_never_checks_runs_to_its_end_and_still_times_out() -> None:
    with no_hang():
        async with aw.Runtime() as rt:
            for timeout in start_timeouts():  # the timeout must fire after the thread started
                gate = Gate()
                job = rt.submit_nowait(gate.run, 7, timeout=timeout)
                await wait_in_thread_or_end(gate.entered, job)
                if gate.entered.is_set():
                    break
                assert job.state is aw.JobState.FAILED  # timed out before its thread started
                assert isinstance(job.exception(), aw.JobTimeout)
            # The job's timer was set when it started, before its thread entered; this one
            # is set now, for as long, so the job's has fired when this sleep ends.
            await anyio.sleep(timeout)
            assert not job.done()  # timed out, but the job ends only when its thread does
            gate.release.set()  # blocking work that never calls check_cancelled() ends
            assert await job.wait() is aw.JobState.FAILED
            assert gate.finished.is_set()  # the job ended only when its thread did
            assert isinstance(job.exception(), aw.JobTimeout)


async def wait_in_thread_or_end(event: threading.Event, job: aw.Job[Any]) -> None:
    """Wait until *event* is set (by the job's thread) or the job has ended, whichever first."""
    async with anyio.create_task_group() as tg:

        async def either(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            tg.cancel_scope.cancel()

        tg.start_soon(either, functools.partial(wait_in_thread, event))
        tg.start_soon(either, job.wait)


@pytest.mark.parametrize("how", ["job.cancel", "timeout"])
async def test_a_job_stopped_while_waiting_for_a_thread_never_starts(how: str) -> None:
    gate = Gate()
    started: list[str] = []

    def record(label: str) -> str:
        started.append(label)
        return label

    with no_hang():
        async with aw.Runtime(workers=4, threads=1) as rt:
            first = rt.submit_nowait(gate.run, 1)
            await wait_in_thread(gate.entered)  # the only thread is taken
            timeout = 0.1 if how == "timeout" else None
            waiting = rt.submit_nowait(record, "waiting", timeout=timeout)
            if how == "job.cancel":
                await all_blocked()
                assert state(waiting) is aw.JobState.RUNNING  # a worker waits for the thread
                assert waiting.cancel("not needed") is True
            # It ends at once, while the thread is still taken.
            await waiting.wait()
            assert not first.done()
            gate.release.set()
            assert await first == 1
            assert await rt.run(record, "after") == "after"  # the thread is free again
    assert started == ["after"]
    if how == "timeout":
        assert waiting.state is aw.JobState.FAILED
        assert isinstance(waiting.exception(), aw.JobTimeout)
    else:
        assert waiting.state is aw.JobState.CANCELLED


async def test_a_thread_job_that_never_checks_is_abandoned_at_the_deadline_and_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncworkers")
    gate = Gate()
    with no_hang():
        async with aw.Runtime(workers=4, threads=1) as rt:
            stuck = rt.submit_nowait(gate.run, name="stubborn-report")
            await wait_in_thread(gate.entered)
            waiting = rt.submit_nowait(gate.run, name="waiting-report")
            await all_blocked()
            assert state(waiting) is aw.JobState.RUNNING  # a worker waits for the thread
            # The drain's deadline must pass (the thread never checks); then shutdown cancels.
            await rt.shutdown(timeout=0.1)
            assert not gate.finished.is_set()  # shutdown did not wait for the thread
            assert stuck.state is aw.JobState.CANCELLED
            assert waiting.state is aw.JobState.CANCELLED
        gate.release.set()  # let the abandoned thread go
        await wait_in_thread(gate.finished)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "abandoning 1 thread job" in message
    assert f"stubborn-report (id {stuck.id})" in message
    assert "waiting-report" not in message  # it never had a thread


async def test_cancelling_the_block_abandons_a_stuck_thread_and_names_only_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncworkers")
    gate = Gate()
    jobs: list[aw.Job[int]] = []
    with no_hang():
        with anyio.CancelScope() as scope:
            async with aw.Runtime(workers=4, threads=1) as rt:
                jobs.append(rt.submit_nowait(gate.run, name="stuck-in-thread"))
                await wait_in_thread(gate.entered)
                jobs.append(rt.submit_nowait(gate.run, name="queued-for-thread"))
                await all_blocked()
                assert state(jobs[1]) is aw.JobState.RUNNING  # a worker waits for the thread
                scope.cancel()
                await asyncio.sleep(0)
        gate.release.set()
        await wait_in_thread(gate.finished)
    assert [job.state for job in jobs] == [aw.JobState.CANCELLED] * 2
    message = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "stuck-in-thread" in message
    assert "queued-for-thread" not in message


async def test_a_cancelled_shutdown_names_only_the_jobs_that_hold_a_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncworkers")
    gate = Gate()
    with no_hang():
        async with aw.Runtime(workers=4, threads=1) as rt:
            stuck = rt.submit_nowait(gate.run, name="holds-the-thread")
            await wait_in_thread(gate.entered)
            waiting = rt.submit_nowait(gate.run, name="waits-for-a-thread")
            await all_blocked()
            assert state(waiting) is aw.JobState.RUNNING  # a worker waits for the thread
            with anyio.CancelScope() as scope:
                canceller = asyncio.create_task(cancel_once_all_blocked(scope))
                await rt.shutdown()  # would drain forever: the thread never checks
            await canceller
            assert scope.cancelled_caught
            # Cancelling shutdown stops everything at once, without awaiting anything.
            assert stuck.state is aw.JobState.CANCELLED
        assert waiting.state is aw.JobState.CANCELLED
        gate.release.set()
        await wait_in_thread(gate.finished)
    message = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "holds-the-thread" in message
    assert "waits-for-a-thread" not in message  # it never started


async def cancel_once_all_blocked(scope: anyio.CancelScope) -> None:
    """Cancel *scope* once every other task waits (here: once shutdown is draining)."""
    await all_blocked()
    scope.cancel()


# -- the limiter handed to anyio: _Held ---------------------------------------------------------

# What anyio's to_thread.run_sync does with the limiter it is given, in order, as _Held
# (src/asyncworkers/_core/_bridges.py) relies on: enter it before the hop, exit it after, and
# nothing else. _Held is a no-op limiter that never ran CapacityLimiter's __init__, so any
# other use (acquire, release, a token count) would reach code that is not there.
EXPECTED_LIMITER_USES = ["__aenter__", "the call", "__aexit__"]


class RecordingLimiter(anyio.CapacityLimiter):
    """A limiter that records every use made of it (as _Held, it never runs __init__)."""

    def __new__(cls) -> RecordingLimiter:
        return object.__new__(cls)

    def __init__(self) -> None:
        self.uses: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        if name != "uses" and not name.startswith("__"):
            object.__getattribute__(self, "uses").append(name)
        return object.__getattribute__(self, name)

    async def __aenter__(self) -> None:
        self.uses.append("__aenter__")

    async def __aexit__(self, *exc_info: object) -> None:
        self.uses.append("__aexit__")


def limiter_usage_changed(uses: list[str], error: BaseException | None = None) -> str:
    anyio_version = importlib.metadata.version("anyio")
    return (
        f"anyio {anyio_version} changed how to_thread.run_sync uses its limiter: expected "
        f"{EXPECTED_LIMITER_USES}, got {uses}"
        + (f" and {error!r}" if error is not None else "")
        + ". asyncworkers' _Held (_core/_bridges.py) is a no-op limiter built on the old "
        "usage: check it provides every use now made, then update EXPECTED_LIMITER_USES."
    )


@pytest.mark.parametrize("ending", ["returns", "cancelled"])
async def test_anyio_uses_the_thread_limiter_only_as_held_expects(ending: str) -> None:
    limiter = RecordingLimiter()
    entered, release = threading.Event(), threading.Event()

    def call() -> None:
        limiter.uses.append("the call")
        entered.set()
        assert release.wait(GUARD), "never released"

    try:
        with no_hang():
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    functools.partial(
                        anyio.to_thread.run_sync, call, limiter=limiter, abandon_on_cancel=True
                    )
                )
                await wait_in_thread(entered)
                if ending == "cancelled":  # as the last phase of a shutdown does
                    tg.cancel_scope.cancel()
                else:
                    release.set()
    except Exception as exc:
        pytest.fail(limiter_usage_changed(limiter.uses, exc))
    finally:
        release.set()
    assert limiter.uses == EXPECTED_LIMITER_USES, limiter_usage_changed(limiter.uses)


def test_held_provides_every_use_anyio_makes_of_a_limiter() -> None:
    missing = [use for use in EXPECTED_LIMITER_USES if use != "the call" and use not in vars(_Held)]
    assert missing == [], f"_Held does not define {missing} itself"
    held = _Held()
    assert isinstance(held, anyio.CapacityLimiter)  # the type anyio's signature asks for


async def test_held_is_a_limiter_anyio_accepts_and_that_limits_nothing() -> None:
    loop_thread = threading.get_ident()
    with no_hang():
        idents = [
            await anyio.to_thread.run_sync(threading.get_ident, limiter=_HELD) for _ in range(3)
        ]
    assert loop_thread not in idents
