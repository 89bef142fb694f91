"""Regressions for the faults found when the runtime was attacked (issue 7), item by item.

Each test names its item. They run on asyncio and on uvloop, and none depends on timing:
they wait for events (a job started, a timeout fired), never for a number of milliseconds.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import subprocess
import sys
import threading
import traceback
import weakref
from pathlib import Path
from typing import Any

import anyio
import pytest

import _proc_funcs
import asyncworkers as aw
from _helpers import HANG_GUARD, Blocker, Boom, double, forever, no_hang


class UserBaseError(BaseException):
    """A BaseException subclass of the user's own."""


async def wait_until(predicate: Any) -> None:
    """Wait for a condition that the loop makes true (a timer firing), never for a time."""
    with no_hang():
        while not predicate():
            await anyio.sleep(0.005)


def blocking_until(event: threading.Event) -> str:
    """A thread job that never calls check_cancelled(): it returns once *event* is set."""
    assert event.wait(HANG_GUARD)
    return "returned"


# -- 1. a stop after a thread job's timeout fired wins, and is not retried --------------


@pytest.mark.parametrize("how", ["job.cancel", "token"])
async def test_1_stop_after_a_fired_timeout_cancels_and_never_retries(how: str) -> None:
    release = threading.Event()
    token = aw.CancellationToken()
    async with aw.Runtime(2) as rt:
        job = rt.submit_nowait(
            blocking_until, release, timeout=0.05, retry=aw.Retry(attempts=3), token=token
        )
        await wait_until(lambda: isinstance(job._stop, aw.JobTimeout))  # the timer fired
        if how == "job.cancel":
            assert job.cancel("stop it") is True
        else:
            token.cancel("stop it")
        release.set()
        with no_hang():
            assert await job.wait() is aw.JobState.CANCELLED
    assert job.attempts == 1
    assert isinstance(job.exception(), aw.JobCancelled)
    assert rt.metrics().retried == 0


# -- 2. a BaseException that is not a cancellation fails only its job --------------------


async def raise_async(error: BaseException) -> None:
    raise error


def raise_sync(error: BaseException) -> None:
    raise error


@pytest.mark.parametrize("error_type", [UserBaseError, GeneratorExit])
@pytest.mark.parametrize("path", ["inline", "scoped", "thread"])
async def test_2_a_base_exception_fails_its_job_and_nothing_else(
    error_type: type[BaseException], path: str
) -> None:
    fn: Any = raise_sync if path == "thread" else raise_async
    options: aw.JobOptions = {"timeout": 3600.0} if path == "scoped" else {}
    async with aw.Runtime(2) as rt:
        sibling = Blocker()
        other = rt.submit_nowait(sibling.run, 7)
        with no_hang():
            await sibling.started.wait()
            with pytest.raises(error_type):
                await rt.run(fn, error_type("boom"), **options)
        sibling.release.set()
        with no_hang():
            assert await other == 7
    failed = rt.metrics()
    assert (failed.failed, failed.completed, failed.cancelled) == (1, 1, 0)
    assert not sibling.saw_cancel


@pytest.mark.parametrize("error_type", [KeyboardInterrupt, SystemExit])
async def test_2_keyboard_interrupt_and_system_exit_from_a_thread_fail_the_job(
    error_type: type[BaseException],
) -> None:
    async with aw.Runtime(2) as rt:
        job = rt.submit_nowait(raise_sync, error_type())
        with no_hang():
            assert await job.wait() is aw.JobState.FAILED
        assert isinstance(job.exception(), error_type)
        assert await rt.run(double, 4) == 8  # the runtime goes on


async def test_2_a_base_exception_from_a_process_job_fails_it() -> None:
    async with aw.Runtime(2, processes=1) as rt:
        job = rt.submit_nowait(_proc_funcs.raise_custom_base, kind="process")
        with no_hang():
            assert await job.wait() is aw.JobState.FAILED
        assert isinstance(job.exception(), _proc_funcs.CustomBaseError)


# -- 3. SystemExit in a process job fails the job; the parent and the pool go on ---------


async def test_3_system_exit_in_a_process_job_fails_only_the_job() -> None:
    async with aw.Runtime(2, processes=1) as rt:
        job = rt.submit_nowait(_proc_funcs.system_exit, 3, kind="process")
        with no_hang():
            assert await job.wait() is aw.JobState.FAILED
            error = job.exception()
            assert isinstance(error, SystemExit)
            assert error.code == 3
            assert await rt.run(_proc_funcs.square, 9, kind="process") == 81


# -- 4. hooks and callbacks: a snapshot, and everything they raise is logged -------------


async def test_4a_a_hook_that_removes_itself_does_not_make_the_next_skip() -> None:
    seen: list[str] = []
    async with aw.Runtime(1) as rt:

        def first(job: aw.Job[Any]) -> None:
            seen.append("first")
            remove_first()

        remove_first = rt.on_complete(first)
        rt.on_complete(lambda job: seen.append("second"))
        await rt.run(double, 1)
        await rt.run(double, 2)
    assert seen == ["first", "second", "second"]


@pytest.mark.parametrize("error", [asyncio.CancelledError(), UserBaseError(), GeneratorExit()])
async def test_4b_what_a_hook_or_callback_raises_is_logged_and_nothing_is_lost(
    error: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    later: list[int] = []

    def hostile(_: object) -> None:
        raise error

    with caplog.at_level(logging.ERROR, logger="asyncworkers"):
        async with aw.Runtime(2) as rt:
            rt.on_complete(hostile)
            rt.on_complete(lambda job: later.append(job.id))
            job = rt.submit_nowait(double, 5, callback=hostile)
            job.add_done_callback(hostile)
            with no_hang():
                assert await rt.join() is True
                assert await job == 10
                assert await rt.run(double, 6) == 12
    assert later == [1, 2]
    assert job.state is aw.JobState.COMPLETED
    assert sum("raised" in record.getMessage() for record in caplog.records) >= 3


# -- 5. shutdown() and join() from the runtime's own job raise instead of hanging --------


@pytest.mark.parametrize("call", ["join", "shutdown"])
async def test_5_join_or_shutdown_from_an_own_job_raises(call: str) -> None:
    async with aw.Runtime(2) as rt:

        async def inside() -> None:
            await getattr(rt, call)()

        with no_hang():
            job = rt.submit_nowait(inside)
            assert await job.wait() is aw.JobState.FAILED
        error = job.exception()
        assert isinstance(error, RuntimeError)
        assert "inside one of this runtime's jobs" in str(error)


# -- 6. finished jobs do not keep their callables (and what they capture) alive ---------


class Payload:
    """Stands in for a large object that a job's callable captures."""


async def capture(payload: Payload) -> int:
    return id(payload)


def capture_sync(payload: Payload) -> int:
    return id(payload)


@pytest.mark.parametrize("form", ["partial", "lambda-default", "partial-thread"])
async def test_6_a_finished_job_does_not_keep_its_callable_alive(form: str) -> None:
    refs = []
    async with aw.Runtime(2) as rt:
        for _ in range(3):
            payload = Payload()
            refs.append(weakref.ref(payload))
            if form == "partial":
                fn: Any = functools.partial(capture, payload)
            elif form == "partial-thread":
                fn = functools.partial(capture_sync, payload)
            else:

                async def fn(p: Payload = payload) -> int:
                    return id(p)

            job = rt.submit_nowait(fn)
            with no_hang():
                await job
            del payload, fn, job
        gc.collect()
        assert [ref() for ref in refs] == [None, None, None]  # while the runtime lives on


# -- 7. the cost of distinct priorities does not grow with their number ------------------


async def test_7_many_distinct_priorities_leave_no_levels_behind() -> None:
    async with aw.Runtime(4) as rt:
        rt.pause()
        jobs = [rt.submit_nowait(double, i, priority=-i) for i in range(5000)]
        assert len(rt._queue._heap) == 5000
        order: list[int] = []
        rt.on_complete(lambda job: order.append(job.id))
        rt.resize(1)
        rt.resume()
        with no_hang():
            assert await rt.join()
        assert order == [job.id for job in jobs]  # the highest (least negative) first
        # An emptied level goes when a worker next looks at it: one more job sweeps them.
        await rt.run(double, 0)
        assert len(rt._queue._heap) <= 1


# -- 8. reading a failed result does not grow its traceback -----------------------------


async def test_8_reading_a_failure_many_times_keeps_one_traceback() -> None:
    async def fail() -> None:
        raise Boom("x")

    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(fail)
        await job.wait()
    depths = []
    for _ in range(50):
        with pytest.raises(Boom) as info:
            job.result()
        depths.append(len(traceback.extract_tb(info.value.__traceback__)))
        with pytest.raises(Boom) as info:
            await job
        depths.append(len(traceback.extract_tb(info.value.__traceback__)))
    assert max(depths) <= min(depths) + 1  # each read adds its own frame, never the last's


# -- 9. no worker process outlives a job cancelled while its process starts -------------

_ORPHAN_SCRIPT = """
import asyncio, os, sys
import asyncworkers as aw
sys.path.insert(0, {tests!r})
import _proc_funcs

async def main():
    async with aw.Runtime(2, processes=2) as rt:
        for how in ("cancel", "timeout"):
            options = {{"timeout": 0.001}} if how == "timeout" else {{}}
            job = rt.submit_nowait(_proc_funcs.square, 3, kind="process", **options)
            while job.state is aw.JobState.PENDING:
                await asyncio.sleep(0)
            if how == "cancel":
                await asyncio.sleep(0)  # into the start of the worker process
                job.cancel()
            await job.wait()
            print(how, job.state.name)

if {uvloop!r}:
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())

children = []
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            with open(f"/proc/{{entry}}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            children.append((entry, fields[0]))
print("children", children)
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads child processes from /proc")
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_9_no_worker_process_outlives_a_job_cancelled_while_it_starts(loop: str) -> None:
    tests = str(Path(__file__).parent)
    script = _ORPHAN_SCRIPT.format(tests=tests, uvloop=loop == "uvloop")
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "cancel CANCELLED"
    assert lines[1] in ("timeout FAILED", "timeout COMPLETED")  # a fast machine may finish
    assert lines[-1] == "children []", proc.stdout


# -- 10. SyncRuntime keeps the interpreter alive for a thread job it had to leave --------

_STUBBORN_SCRIPT = """
import sys, threading, time
import asyncworkers as aw

started, release = threading.Event(), threading.Event()

def stubborn(path):
    started.set()
    release.wait()
    time.sleep(0.3)  # still working when the main thread reaches the end of the script
    with open(path, "w") as f:
        f.write("done")

with aw.SyncRuntime(2, shutdown_timeout=0.1) as rt:
    rt.submit(stubborn, sys.argv[1])
    started.wait()
release.set()
print("main thread finished")
"""


def test_10_sync_runtime_waits_at_exit_for_an_abandoned_thread_job(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    proc = subprocess.run(
        [sys.executable, "-c", _STUBBORN_SCRIPT, str(marker)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "main thread finished" in proc.stdout
    assert "abandoning 1 thread job" in proc.stderr
    assert marker.read_text() == "done"


# -- 12. job.cancel() from another thread ------------------------------------------------


async def test_12_job_cancel_from_another_thread() -> None:
    async with aw.Runtime(2) as rt:
        blocker = Blocker()
        job = rt.submit_nowait(blocker.run)
        with no_hang():
            await blocker.started.wait()
            assert await anyio.to_thread.run_sync(job.cancel, "from a thread") is True
            assert await job.wait() is aw.JobState.CANCELLED
        assert blocker.saw_cancel
        assert str(job.exception()) == "from a thread"
        assert job.cancel() is False


# -- 13. submit from another thread is refused --------------------------------------------


async def test_13_submit_nowait_from_another_thread_is_refused() -> None:
    async with aw.Runtime(2) as rt:
        for attempt in (
            lambda: rt.submit_nowait(double, 1),
            lambda: rt.enqueue(aw.WorkUnit(double, args=(1,))),
        ):
            with pytest.raises(RuntimeError, match="SyncRuntime"):
                await anyio.to_thread.run_sync(attempt)
        assert rt.metrics().submitted == 0


# -- 14. awaiting a job from another event loop raises ----------------------------------


async def test_14_awaiting_a_job_from_another_loop_raises() -> None:
    async with aw.Runtime(2) as rt:
        job = rt.submit_nowait(forever)

        def await_elsewhere() -> str:
            async def waiter() -> None:
                await job

            async def state_waiter() -> None:
                await job.wait()

            messages = []
            for coro in (waiter, state_waiter):
                try:
                    asyncio.run(coro())
                except RuntimeError as exc:
                    messages.append(str(exc))
            return " | ".join(messages)

        with no_hang():
            text = await anyio.to_thread.run_sync(await_elsewhere)
        assert text.count("cannot be awaited from another") == 2
        job.cancel()


# -- 15. bad input fails at the call --------------------------------------------------


async def plain_async() -> None:
    return None


def plain_sync() -> None:
    return None


async def test_15_bad_input_fails_at_the_call() -> None:
    huge = 10**400
    with pytest.raises(ValueError, match="shutdown_timeout"):
        aw.Runtime(1, shutdown_timeout=huge)
    with pytest.raises(ValueError, match="backoff"):
        aw.Retry(backoff=huge)
    with pytest.raises(TypeError, match="kwargs"):
        aw.WorkUnit(plain_async, kwargs={1: 2})  # type: ignore[dict-item]
    async with aw.Runtime(1) as rt:
        with pytest.raises(ValueError, match="timeout"):
            rt.submit_nowait(plain_async, timeout=huge)
        with pytest.raises(ValueError, match="join"):
            await rt.join(timeout=huge)
        with pytest.raises(TypeError, match='kind="async" needs a coroutine function'):
            rt.submit_nowait(plain_sync, kind="async")
        # inf is "no limit", wherever a number of seconds is taken
        assert await rt.run(double, 2, timeout=float("inf")) == 4
        assert await rt.join(timeout=float("inf")) is True
        assert rt.metrics().submitted == 1
    token = aw.CancellationToken()
    with pytest.raises(ValueError, match="wait_blocking"):
        token.wait_blocking(float("nan"))
    threading.Timer(0.01, token.cancel).start()
    assert token.wait_blocking(float("inf")) is True


# -- 16. a partial of an object with an async __call__ runs as an async job ------------


class AsyncCallable:
    async def __call__(self, x: int) -> int:
        await asyncio.sleep(0)
        return x + 1


async def test_16_partial_of_an_async_callable_object_is_async() -> None:
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(functools.partial(AsyncCallable(), 41))
        assert job.kind == "async"
        with no_hang():
            assert await job == 42


# -- 17. a retry goes ahead of the jobs of its priority queued after it ------------------


async def test_17_a_retry_runs_before_jobs_queued_after_its_first_attempt() -> None:
    started: list[str] = []
    failures = [Boom("first attempt")]

    async def flaky() -> None:
        started.append("flaky")
        if failures:
            raise failures.pop()

    async def other(i: int) -> None:
        started.append(f"other-{i}")
        await asyncio.sleep(0)  # like any I/O: the loop runs, and with it the retry's timer

    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(flaky, retry=aw.Retry(attempts=2))
        for i in range(50):
            rt.submit_nowait(other, i)
        with no_hang():
            await job
    second = started.index("flaky", 1)
    assert second <= 3, started[:10]  # not behind the 50 queued after it
    assert len(started) == 52


# -- 18. map(return_exceptions=True) gives every outcome in order -----------------------


async def test_18_map_return_exceptions() -> None:
    async def maybe(x: int) -> int:
        if x % 3 == 0:
            raise Boom(str(x))
        return x

    async with aw.Runtime(3) as rt:
        with no_hang():
            out = [v async for v in rt.map(maybe, range(7), return_exceptions=True)]
        assert [type(v) if isinstance(v, BaseException) else v for v in out] == [
            Boom,
            1,
            2,
            Boom,
            4,
            5,
            Boom,
        ]
        with pytest.raises(TypeError, match="return_exceptions"):
            async for _ in rt.map(maybe, [1], return_exceptions=1):  # type: ignore[call-overload]
                pass


# -- 19. the demo works with any worker count the CLI accepts ---------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_19_demo_with_few_workers(workers: str) -> None:
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "asyncworkers", "demo", "--jobs", "12", "--workers", workers],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = [line for line in proc.stdout.splitlines() if line.startswith(("ok ", "FAIL "))]
    assert len(checks) >= 6, proc.stdout
    assert all(line.startswith("ok ") for line in checks), proc.stdout


# -- the same class as 12 and 13: controls from another thread --------------------------


@pytest.mark.parametrize("control", ["pause", "resume", "resize"])
async def test_controls_from_another_thread_are_refused(control: str) -> None:
    async with aw.Runtime(2) as rt:
        call = (lambda: rt.resize(3)) if control == "resize" else getattr(rt, control)
        with pytest.raises(RuntimeError, match="own event loop"):
            await anyio.to_thread.run_sync(call)
        assert not rt.paused
        assert await rt.run(double, 2) == 4
