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
import contextvars
import functools
import gc
import importlib.metadata
import logging
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import asyncworkers as aw
from _helpers import HANG_GUARD as GUARD
from _helpers import SUBPROCESS_GUARD, all_blocked, no_hang, start_timeouts, state, wait_in_thread
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


# -- the runtime's worker threads (_core/_threads.py) ------------------------------------------


def current_thread() -> threading.Thread:
    return threading.current_thread()


async def test_jobs_one_after_another_reuse_one_thread_and_it_ends_with_the_runtime() -> None:
    with no_hang():
        async with aw.Runtime(workers=4, threads=4) as rt:
            threads = {await rt.run(current_thread) for _ in range(20)}
            assert len(threads) == 1  # a thread starts only when every other one is busy
            (thread,) = threads
            assert thread.daemon
            assert thread.name.startswith("asyncworkers-thread")
            assert thread.is_alive()  # idle, waiting for the next job
        await anyio.to_thread.run_sync(thread.join, GUARD)
    assert not thread.is_alive()  # the runtime closed its pool: the idle thread left


async def test_the_pool_grows_only_to_the_jobs_that_ran_at_once() -> None:
    gate = Gate()
    with no_hang():
        async with aw.Runtime(workers=8, threads=8) as rt:
            jobs = [rt.submit_nowait(gate.run, i) for i in range(3)]
            await wait_in_thread(gate.entered)
            gate.release.set()
            assert sorted([await job for job in jobs]) == [0, 1, 2]
            for _ in range(5):  # one at a time: an idle thread takes each, none is added
                await rt.run(current_thread)
            assert rt._thread_pool is not None
            assert rt._thread_pool.size <= 3


@pytest.mark.parametrize(
    "error",
    [
        SystemExit(3),
        KeyboardInterrupt(),
        GeneratorExit(),
        asyncio.CancelledError(),
        StopIteration(5),  # an asyncio future refuses it as an exception
    ],
    ids=lambda error: type(error).__name__,
)
async def test_a_base_exception_fails_the_thread_job_and_its_thread_serves_the_next(
    error: BaseException,
) -> None:
    def raise_it() -> threading.Thread:
        threads.append(threading.current_thread())
        raise error

    threads: list[threading.Thread] = []
    with no_hang():
        async with aw.Runtime(workers=2, threads=1) as rt:
            job = rt.submit_nowait(raise_it)
            assert await job.wait() is aw.JobState.FAILED
            assert job.exception() is error
            assert await rt.run(current_thread) is threads[0]  # the same thread goes on
    assert rt.metrics().failed == 1


async def test_context_variables_of_the_runtimes_block_reach_thread_jobs() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("set before the runtime")

    def read() -> str:
        value = var.get()
        var.set("changed in the thread")  # in the job's own copy of the context
        return value

    with no_hang():
        async with aw.Runtime(workers=1) as rt:
            assert await rt.run(read) == "set before the runtime"
            assert await rt.run(read) == "set before the runtime"
    assert var.get() == "set before the runtime"


async def test_an_idle_thread_keeps_no_argument_or_result_alive() -> None:
    class Payload:
        pass

    def echo(payload: Payload) -> Payload:
        return payload

    with no_hang():
        async with aw.Runtime(workers=1) as rt:
            payload = Payload()
            ref = weakref.ref(payload)
            job = rt.submit_nowait(echo, payload)
            assert await job is payload
            del job, payload
            gc.collect()
            assert ref() is None


async def test_a_thread_the_job_starts_itself_is_outside_any_job() -> None:
    seen: dict[str, object] = {}

    def in_foreign_thread(rt: aw.Runtime) -> None:
        seen["current_job"] = aw.current_job()
        aw.check_cancelled()  # outside a job: nothing to check
        try:
            rt.submit_nowait(current_thread)
        except RuntimeError as exc:
            seen["submit"] = str(exc)

    def job_body(rt: aw.Runtime) -> aw.Job[Any] | None:
        in_foreign_thread(rt)  # the job's own thread is foreign to the loop too
        seen["in_job_thread"] = seen.pop("current_job")
        foreign = threading.Thread(target=in_foreign_thread, args=(rt,))
        foreign.start()
        foreign.join(GUARD)
        return aw.current_job()

    with no_hang():
        async with aw.Runtime(workers=1) as rt:
            job = rt.submit_nowait(job_body, rt)
            assert await job is job
    assert seen["in_job_thread"] is job
    assert seen["current_job"] is None  # a new thread starts with an empty context
    assert "SyncRuntime" in str(seen["submit"])


async def test_a_job_waiting_for_a_thread_is_cancelled_by_its_token() -> None:
    gate = Gate()
    token = aw.CancellationToken()
    with no_hang():
        async with aw.Runtime(workers=4, threads=1) as rt:
            first = rt.submit_nowait(gate.run, 1)
            await wait_in_thread(gate.entered)
            waiting = rt.submit_nowait(gate.run, 2, token=token)
            await all_blocked()
            assert state(waiting) is aw.JobState.RUNNING  # its worker waits for the thread
            token.cancel("no longer needed")
            assert await waiting.wait() is aw.JobState.CANCELLED
            assert not first.done()
            gate.release.set()
            assert await first == 1
    assert str(waiting.exception()) == "no longer needed"
    assert rt._thread_pool is not None
    assert rt._thread_pool.size == 1


async def test_the_pool_follows_the_thread_limiter_when_it_is_resized() -> None:
    lock = threading.Lock()
    inside = 0
    three_in = threading.Event()
    release = threading.Event()

    def blocking(i: int) -> int:
        nonlocal inside
        with lock:
            inside += 1
            if inside == 3:
                three_in.set()
        assert release.wait(GUARD), "never released"
        return i

    with no_hang():
        async with aw.Runtime(workers=8, threads=1) as rt:
            jobs = [rt.submit_nowait(blocking, i) for i in range(3)]
            await all_blocked()
            assert inside <= 1  # one thread token
            limiter = rt._thread_limiter
            assert limiter is not None
            limiter.total_tokens = 3  # the two waiting jobs get theirs, and threads to run in
            await wait_in_thread(three_in)
            release.set()
            assert [await job for job in jobs] == [0, 1, 2]
            limiter.total_tokens = 1  # and back: one at a time again, in the threads made
            more = [rt.submit_nowait(current_thread) for _ in range(6)]
            assert len({await job for job in more}) <= 3
            assert rt._thread_pool is not None
            assert rt._thread_pool.size == 3


_ABANDONED_SCRIPT = """
import asyncio, sys, threading, time
import asyncworkers as aw

started, release = threading.Event(), threading.Event()

def stubborn(path):
    started.set()
    release.wait()
    time.sleep(0.3)  # still working when the main thread reaches the end of the script
    with open(path, "w") as f:
        f.write("done")

async def main():
    async with aw.Runtime(2, shutdown_timeout=0.1) as rt:
        rt.submit_nowait(stubborn, sys.argv[1])
        await asyncio.to_thread(started.wait)

asyncio.run(main())
release.set()
print("main thread finished")
"""


def test_the_interpreter_waits_at_exit_for_a_job_abandoned_in_a_pool_thread(
    tmp_path: Path,
) -> None:
    # The pool's threads are daemon threads: without the wait, exit would cut the job off.
    marker = tmp_path / "marker"
    proc = subprocess.run(
        [sys.executable, "-c", _ABANDONED_SCRIPT, str(marker)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_GUARD,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "main thread finished" in proc.stdout
    assert "abandoning 1 thread job" in proc.stderr
    assert marker.read_text() == "done"


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
