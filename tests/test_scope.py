"""The light per-job scope: a timeout or a token on an inline coroutine job.

Such a job runs in its worker's own loop, like a plain one; its deadline is a loop timer
and its token's cancel goes through the runtime, and both stop it by injecting
``task.cancel()`` into the worker and taking it back with ``Task.uncancel()`` (the way
``asyncio.timeout()`` works). These tests pin down what that must keep: a timeout is
``JobTimeout``, a stop is ``JobCancelled``, a stop beats a timeout, the job's own anyio
scopes and asyncio timeouts nest inside, anyio code in the job sees a normal cancellation,
a job that swallows the cancellation is never a success, and a cancellation that is not
ours (the runtime's own, the caller's) is never swallowed.

No sleeping to synchronise. Where two stops must land in one loop iteration, the test
blocks the loop on purpose (``time.sleep`` past a short deadline) so that both are due when
it runs again: what is asserted is the order the loop then runs them in, never a speed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import asyncworkers as aw
from _helpers import Blocker, all_blocked, forever, no_hang

SHORT = 0.02  # a deadline meant to fire
LONG = 3600.0  # a deadline meant never to fire


class Fatal(BaseException):
    """A BaseException of the job's own (not KeyboardInterrupt: that would stop pytest)."""


def options(how: str, token: aw.CancellationToken) -> dict[str, Any]:
    """The options that make an inline job guarded: a timeout that never fires, or a token
    (and, for "both", the two)."""
    if how == "timeout":
        return {"timeout": LONG}
    if how == "token":
        return {"token": token}
    return {"timeout": LONG, "token": token}


def worker_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "asyncworkers-worker"]


async def assert_workers_clean(rt: aw.Runtime) -> None:
    """Every injected cancel was taken back: the workers live on, none is left cancelling,
    and the next job (on the same workers) completes."""
    await all_blocked()
    tasks = worker_tasks()
    assert tasks, "the workers died"
    assert [t.cancelling() for t in tasks] == [0] * len(tasks)
    assert rt.metrics().worker_errors == 0
    with no_hang():
        assert await rt.run(_triple, 3) == 9
        assert await rt.run(_triple, 4, timeout=LONG) == 12


async def _triple(x: int) -> int:
    return 3 * x


async def until_started(started: asyncio.Event) -> None:
    with no_hang():
        await started.wait()
    await all_blocked()  # the job waits at its await now


def block_the_loop_past(seconds: float) -> None:
    """Hold the loop (on purpose) until *seconds* have passed: the timers set to fire within
    them are all due when it runs again, and run in the order of their deadlines."""
    time.sleep(seconds)


# -- the basics on the inline path ---------------------------------------------------------


async def test_a_guarded_job_runs_inline_in_the_worker_task_with_no_scope() -> None:
    seen: list[tuple[bool, int]] = []

    async def where() -> str:
        task = asyncio.current_task()
        assert task is not None
        seen.append((task.get_name() == "asyncworkers-worker", task.cancelling()))
        job = aw.current_job()
        assert job is not None
        return job.name

    token = aw.CancellationToken()
    async with aw.Runtime(1) as rt:
        with no_hang():
            assert await rt.run(where, timeout=LONG, name="t") == "t"
            assert await rt.run(where, token=token, name="k") == "k"
        assert seen == [(True, 0), (True, 0)]
        assert not token._callbacks  # the finished job unlinked itself
        await assert_workers_clean(rt)


@pytest.mark.parametrize("how", ["timeout", "token", "both"])
async def test_a_job_that_swallows_the_stop_and_returns_is_never_a_success(how: str) -> None:
    token = aw.CancellationToken()
    started = asyncio.Event()
    caught: list[str] = []

    async def stubborn() -> str:
        started.set()
        try:
            await forever()
        except asyncio.CancelledError:
            caught.append("cancel")
            await asyncio.sleep(0)  # clean-up awaits are not cancelled again
            caught.append("cleaned up")
        return "pretends to succeed"

    opts: dict[str, Any] = {"token": token} if how == "token" else {"timeout": SHORT}
    if how == "both":
        opts["token"] = token
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(stubborn, **opts)
        if how != "timeout":
            await until_started(started)
            token.cancel("stop")
        with no_hang():
            final = await job.wait()
        assert caught == ["cancel", "cleaned up"]
        if how == "timeout":
            assert final is aw.JobState.FAILED
            assert isinstance(job.exception(), aw.JobTimeout)
        else:
            assert final is aw.JobState.CANCELLED
            assert isinstance(job.exception(), aw.JobCancelled)
        assert rt.metrics().completed == 0
        await assert_workers_clean(rt)


@pytest.mark.parametrize("how", ["timeout", "token"])
async def test_a_job_that_turns_the_stop_into_another_error_still_ends_stopped(
    how: str,
) -> None:
    token = aw.CancellationToken()
    started = asyncio.Event()

    async def converts() -> None:
        started.set()
        try:
            await forever()
        except asyncio.CancelledError:
            raise ValueError("not a cancel") from None

    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(
            converts, **({"token": token} if how == "token" else {"timeout": SHORT})
        )
        if how == "token":
            await until_started(started)
            token.cancel()
        with no_hang():
            await job.wait()
        expected = aw.JobCancelled if how == "token" else aw.JobTimeout
        assert isinstance(job.exception(), expected)
        await assert_workers_clean(rt)


@pytest.mark.parametrize("error", [Fatal("mine"), GeneratorExit(), ValueError("v")])
@pytest.mark.parametrize("how", ["timeout", "token"])
async def test_a_base_exception_from_a_guarded_job_fails_only_the_job(
    how: str, error: BaseException
) -> None:
    token = aw.CancellationToken()

    async def raises() -> None:
        await asyncio.sleep(0)
        raise error

    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(raises, **options(how, token))
        with no_hang():
            assert await job.wait() is aw.JobState.FAILED
        assert job.exception() is error
        await assert_workers_clean(rt)


@pytest.mark.parametrize("how", ["timeout", "token"])
async def test_a_base_exception_after_the_stop_still_ends_stopped(how: str) -> None:
    token = aw.CancellationToken()
    started = asyncio.Event()

    async def raises_on_cancel() -> None:
        started.set()
        try:
            await forever()
        finally:
            raise Fatal("from a finally")

    async with aw.Runtime(1) as rt:
        opts: dict[str, Any] = {"token": token} if how == "token" else {"timeout": SHORT}
        job = rt.submit_nowait(raises_on_cancel, **opts)
        if how == "token":
            await until_started(started)
            token.cancel()
        with no_hang():
            await job.wait()
        expected = aw.JobCancelled if how == "token" else aw.JobTimeout
        assert isinstance(job.exception(), expected)
        await assert_workers_clean(rt)


# -- the job's own scopes nest inside ours -------------------------------------------------


@pytest.mark.parametrize("how", ["timeout", "token"])
async def test_our_stop_passes_through_the_jobs_own_anyio_scope(how: str) -> None:
    token = aw.CancellationToken()
    started = asyncio.Event()
    after_scope: list[bool] = []

    async def job_with_scope() -> None:
        with anyio.CancelScope() as inner:
            with anyio.move_on_after(LONG):
                started.set()
                await forever()
        after_scope.append(inner.cancelled_caught)  # must never run: the stop is ours

    async with aw.Runtime(1) as rt:
        opts: dict[str, Any] = {"token": token} if how == "token" else {"timeout": SHORT}
        job = rt.submit_nowait(job_with_scope, **opts)
        if how == "token":
            await until_started(started)
            token.cancel()
        with no_hang():
            await job.wait()
        expected = aw.JobCancelled if how == "token" else aw.JobTimeout
        assert isinstance(job.exception(), expected)
        assert after_scope == []
        await assert_workers_clean(rt)


@pytest.mark.parametrize("how", ["timeout", "token", "both"])
async def test_the_jobs_own_anyio_scope_and_asyncio_timeout_work_inside_ours(how: str) -> None:
    token = aw.CancellationToken()

    async def own_scopes() -> list[str]:
        seen = []
        with anyio.move_on_after(0) as scope:
            await forever()
        seen.append(f"move_on_after caught={scope.cancelled_caught}")
        with anyio.CancelScope() as scope:
            scope.cancel()
            await anyio.lowlevel.checkpoint()
        seen.append(f"cancel() caught={scope.cancelled_caught}")
        try:
            async with asyncio.timeout(0):
                await forever()
        except TimeoutError:
            seen.append("asyncio.timeout fired")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(forever(), 0)
        seen.append("wait_for fired")
        return seen

    async with aw.Runtime(1) as rt:
        with no_hang():
            assert await rt.run(own_scopes, **options(how, token)) == [
                "move_on_after caught=True",
                "cancel() caught=True",
                "asyncio.timeout fired",
                "wait_for fired",
            ]
        await assert_workers_clean(rt)


async def test_our_timeout_inside_the_jobs_longer_asyncio_timeout_is_ours() -> None:
    inner_fired: list[bool] = []

    async def nested() -> None:
        try:
            async with asyncio.timeout(LONG):
                await forever()
        except TimeoutError:
            inner_fired.append(True)  # would be the job's own timeout: must not happen
            raise

    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(nested, timeout=SHORT)
        with no_hang():
            assert await job.wait() is aw.JobState.FAILED
        assert isinstance(job.exception(), aw.JobTimeout)
        assert inner_fired == []
        await assert_workers_clean(rt)


async def test_the_jobs_asyncio_timeout_after_a_swallowed_stop_is_its_own() -> None:
    # The job swallows our timeout, then opens a timeout of its own that fires: that one is
    # the job's (a TimeoutError it can catch), and the job still ends timed out.
    seen: list[str] = []

    async def swallow_then_own_timeout() -> None:
        try:
            await forever()
        except asyncio.CancelledError:
            seen.append("ours")
        try:
            async with asyncio.timeout(0):
                await forever()
        except TimeoutError:
            seen.append("its own")

    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(swallow_then_own_timeout, timeout=SHORT)
        with no_hang():
            assert await job.wait() is aw.JobState.FAILED
        assert isinstance(job.exception(), aw.JobTimeout)
        assert seen == ["ours", "its own"]
        await assert_workers_clean(rt)


@pytest.mark.parametrize("how", ["timeout", "token"])
async def test_anyio_code_in_the_job_sees_a_normal_cancellation(how: str) -> None:
    token = aw.CancellationToken()
    children_started = 0
    children_cancelled = 0
    caught_by_anyio_class: list[bool] = []
    ready = asyncio.Event()

    async def child() -> None:
        nonlocal children_started, children_cancelled
        children_started += 1
        if children_started == 3:
            ready.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            children_cancelled += 1
            raise

    async def with_task_group() -> None:
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(child)
        except anyio.get_cancelled_exc_class():
            caught_by_anyio_class.append(True)
            raise

    async with aw.Runtime(1) as rt:
        opts: dict[str, Any] = {"token": token} if how == "token" else {"timeout": SHORT}
        job = rt.submit_nowait(with_task_group, **opts)
        if how == "token":
            with no_hang():
                await ready.wait()
            token.cancel()
        with no_hang():
            await job.wait()
        expected = aw.JobCancelled if how == "token" else aw.JobTimeout
        assert isinstance(job.exception(), expected)
        assert children_cancelled == children_started == 3  # no orphans
        assert caught_by_anyio_class == [True]
        await assert_workers_clean(rt)


# -- the order of stops ------------------------------------------------------------------


async def test_a_token_cancel_after_the_deadline_passed_wins() -> None:
    # Both due in one iteration, the token's cancel first (made while the loop was held).
    token = aw.CancellationToken()
    blocker = Blocker()
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(blocker.run, timeout=SHORT, token=token)
        await until_started(blocker.started)
        block_the_loop_past(3 * SHORT)
        token.cancel("stopped")
        with no_hang():
            assert await job.wait() is aw.JobState.CANCELLED
        error = job.exception()
        assert isinstance(error, aw.JobCancelled)
        assert error.reason == "stopped"
        await assert_workers_clean(rt)


async def test_a_token_cancel_right_after_the_timeout_fired_wins_and_cancels_once() -> None:
    # The job's timer fires, then, in the same loop iteration and before the job runs again,
    # a token callback cancels it: the stop wins (CANCELLED, not a retried timeout), and
    # the worker was cancelled once, so taking it back leaves it clean.
    token = aw.CancellationToken()
    blocker = Blocker()
    loop = asyncio.get_running_loop()
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(
            blocker.run, timeout=SHORT, token=token, retry=aw.Retry(attempts=3, backoff=0)
        )
        await until_started(blocker.started)
        loop.call_later(1.5 * SHORT, token.cancel, "after the deadline")
        block_the_loop_past(4 * SHORT)
        with no_hang():
            assert await job.wait() is aw.JobState.CANCELLED
        assert job.attempts == 1
        assert blocker.saw_cancel
        await assert_workers_clean(rt)


async def test_a_job_cancel_inside_a_token_callback_while_the_deadline_fires() -> None:
    # A user's token callback that cancels the job itself, with the deadline due too.
    token = aw.CancellationToken()
    blocker = Blocker()
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(blocker.run, timeout=SHORT, token=token)
        token.register(lambda: job.cancel("from a callback"))
        await until_started(blocker.started)
        block_the_loop_past(3 * SHORT)
        asyncio.get_running_loop().call_soon(token.cancel, "token")
        with no_hang():
            assert await job.wait() is aw.JobState.CANCELLED
        await assert_workers_clean(rt)


@pytest.mark.parametrize("how", ["timeout", "token"])
async def test_a_job_cancelling_its_own_token_or_itself_ends_cancelled(how: str) -> None:
    token = aw.CancellationToken()

    async def stops_itself() -> str:
        if how == "token":
            token.cancel("by myself")
        else:
            job = aw.current_job()
            assert job is not None
            job.cancel("by myself")
        await asyncio.sleep(0)  # not cancelled: a job does not cancel its own worker
        return "ran on"

    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(stops_itself, **options(how, token))
        with no_hang():
            assert await job.wait() is aw.JobState.CANCELLED
        assert str(job.exception()) == "by myself"
        await assert_workers_clean(rt)


async def test_a_job_that_cancelled_itself_and_hangs_is_stopped_at_its_deadline() -> None:
    # Cancelling itself injects nothing (it runs on until it returns); its deadline then
    # carries the stop out, and the stop it asked for wins over the timeout.
    async def cancels_itself_then_hangs() -> None:
        job = aw.current_job()
        assert job is not None
        job.cancel("by myself")
        await forever()

    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(cancels_itself_then_hangs, timeout=SHORT)
        with no_hang():
            assert await job.wait() is aw.JobState.CANCELLED
        assert str(job.exception()) == "by myself"
        await assert_workers_clean(rt)


# -- cancellation that is not ours is never swallowed ----------------------------------------


@pytest.mark.parametrize("how", ["timeout", "token"])
async def test_leaving_the_runtime_cancelled_while_the_deadline_fires(how: str) -> None:
    # The outer cancel (the block around the runtime is cancelled) lands in the iteration
    # where the job's deadline fires too: both are delivered, the job ends CANCELLED, the
    # worker ends, and the cancel reaches the block around the runtime.
    token = aw.CancellationToken()
    blocker = Blocker()
    jobs: list[aw.Job[int]] = []
    with anyio.CancelScope() as outer:
        async with aw.Runtime(1) as rt:
            jobs.append(rt.submit_nowait(blocker.run, timeout=SHORT, token=token))
            await until_started(blocker.started)
            block_the_loop_past(3 * SHORT)
            outer.cancel()
            if how == "token":
                token.cancel()
            await anyio.sleep_forever()
    assert outer.cancelled_caught
    assert jobs[0].state is aw.JobState.CANCELLED
    assert worker_tasks() == []


async def test_an_outer_cancel_during_the_jobs_clean_up_is_not_swallowed() -> None:
    # Our timeout is delivered; while the job cleans up (awaiting), the runtime is cancelled
    # from outside: that second cancel ends the clean-up, the worker and the block.
    cleaning = asyncio.Event()
    finished_clean_up: list[bool] = []

    async def slow_clean_up() -> None:
        try:
            await forever()
        finally:
            cleaning.set()
            await forever()  # a clean-up that needs the outer cancel to end
            finished_clean_up.append(True)

    jobs: list[aw.Job[None]] = []
    with anyio.CancelScope() as outer:
        async with aw.Runtime(1) as rt:
            jobs.append(rt.submit_nowait(slow_clean_up, timeout=SHORT))
            with no_hang():
                await cleaning.wait()
            await all_blocked()
            outer.cancel()
            await anyio.sleep_forever()
    assert outer.cancelled_caught
    assert finished_clean_up == []
    assert jobs[0].state is aw.JobState.CANCELLED
    assert worker_tasks() == []


async def test_the_caller_of_run_cancelled_as_the_deadline_fires_sees_its_cancel() -> None:
    blocker = Blocker()
    async with aw.Runtime(1) as rt:
        caller = asyncio.create_task(rt.run(blocker.run, timeout=SHORT))
        await until_started(blocker.started)
        (job,) = rt.running_jobs()
        block_the_loop_past(3 * SHORT)
        caller.cancel()
        with no_hang(), pytest.raises(asyncio.CancelledError):
            await caller
        assert caller.cancelled()
        with no_hang():
            await job.wait()
        # Whichever came first: the deadline (FAILED, JobTimeout) or the caller's cancel.
        assert isinstance(job.exception(), aw.JobTimeout | aw.JobCancelled)
        await assert_workers_clean(rt)


async def test_shutdown_without_wait_stops_guarded_jobs_and_leaves_no_task() -> None:
    token = aw.CancellationToken()
    blockers = [Blocker() for _ in range(4)]
    async with aw.Runtime(4) as rt:
        each: list[dict[str, Any]] = [{"timeout": LONG}, {"token": token}, {"timeout": SHORT}, {}]
        jobs = [rt.submit_nowait(b.run, **opts) for b, opts in zip(blockers, each, strict=True)]
        for b in blockers:
            with no_hang():
                await b.started.wait()
        with no_hang():
            await rt.shutdown(wait=False)
    states = [job.state for job in jobs]
    # The SHORT one may have timed out first; the rest are cancelled by the shutdown.
    assert states[:2] == [aw.JobState.CANCELLED] * 2
    assert states[3] is aw.JobState.CANCELLED
    assert states[2] in (aw.JobState.CANCELLED, aw.JobState.FAILED)
    assert worker_tasks() == []
    assert not token._callbacks


# -- the stop arriving at every kind of await ------------------------------------------------


def _awaits() -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
    async def lock_held_by_another() -> None:
        lock = anyio.Lock()
        await lock.acquire()
        holder_done = asyncio.Event()

        async def second() -> None:
            async with lock:
                holder_done.set()

        task = asyncio.ensure_future(second())
        try:
            await forever()
        finally:
            task.cancel()

    async def in_a_task_group() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.sleep_forever)

    async def shielded_then_forever() -> None:
        with anyio.CancelScope(shield=True):
            await anyio.lowlevel.checkpoint()
        await forever()

    async def a_plain_future() -> None:
        await asyncio.get_running_loop().create_future()

    async def a_thread() -> None:
        await anyio.to_thread.run_sync(lambda: None)
        await forever()

    return [
        ("event", forever),
        ("anyio.sleep_forever", anyio.sleep_forever),
        ("future", a_plain_future),
        ("lock", lock_held_by_another),
        ("task group", in_a_task_group),
        ("shield then forever", shielded_then_forever),
        ("after a thread hop", a_thread),
    ]


@pytest.mark.parametrize("how", ["timeout", "token", "cancel"])
async def test_a_stop_at_every_kind_of_await(how: str) -> None:
    async with aw.Runtime(2) as rt:
        for name, body in _awaits():
            token = aw.CancellationToken()
            started = asyncio.Event()

            async def job_body(
                body: Callable[[], Awaitable[Any]] = body, started: asyncio.Event = started
            ) -> None:
                started.set()
                await body()

            opts: dict[str, Any] = {"timeout": SHORT} if how == "timeout" else {"token": token}
            job = rt.submit_nowait(job_body, **opts)
            if how != "timeout":
                with no_hang():
                    await started.wait()
                await all_blocked()
                if how == "token":
                    token.cancel(name)
                else:
                    job.cancel(name)
            with no_hang():
                final = await job.wait()
            expected = aw.JobTimeout if how == "timeout" else aw.JobCancelled
            assert isinstance(job.exception(), expected), (name, final, job.exception())
        await assert_workers_clean(rt)


async def test_a_stop_at_each_await_of_a_long_job() -> None:
    # The stop lands after the k-th of many awaits, for every k: each time the job ends
    # stopped, and the worker comes out clean.
    steps = 12
    async with aw.Runtime(1) as rt:
        for k in range(steps):
            token = aw.CancellationToken()
            reached = asyncio.Event()
            done_steps: list[int] = []

            async def many_awaits(
                k: int = k, reached: asyncio.Event = reached, done_steps: list[int] = done_steps
            ) -> None:
                for i in range(steps):
                    if i == k:
                        reached.set()
                        await forever()
                    await asyncio.sleep(0)
                    done_steps.append(i)

            job = rt.submit_nowait(many_awaits, token=token, timeout=LONG)
            with no_hang():
                await reached.wait()
            token.cancel()
            with no_hang():
                assert await job.wait() is aw.JobState.CANCELLED
            assert done_steps == list(range(k))
        await assert_workers_clean(rt)


# -- the checked options shared by a loop of submits -------------------------------------------


async def test_a_loop_submitting_the_same_options_shares_one_checked_options() -> None:
    token = aw.CancellationToken()
    timeout = 30.0
    async with aw.Runtime(2) as rt:
        first = rt.submit_nowait(_triple, 1, timeout=timeout, token=token)
        second = rt.submit_nowait(_triple, 2, timeout=timeout, token=token)
        assert second._opts is first._opts  # checked once
        other = rt.submit_nowait(_triple, 3, timeout=31.0, token=token)
        assert other._opts is not first._opts
        assert other._opts.timeout == 31.0
        with no_hang():
            assert [await j for j in (first, second, other)] == [3, 6, 9]
        assert not token._callbacks


async def test_shared_options_never_let_a_bad_value_or_the_wrong_kind_through() -> None:
    def plain(x: int) -> int:
        return x

    timeout = 30.0
    async with aw.Runtime(2) as rt:
        rt.submit_nowait(_triple, 1, timeout=timeout)
        with pytest.raises(TypeError, match="timeout"):
            rt.submit_nowait(_triple, 1, timeout=True)
        rt.submit_nowait(_triple, 1, timeout=1)
        with pytest.raises(TypeError, match="timeout"):
            rt.submit_nowait(_triple, 1, timeout=True)  # equal to 1, never the same object
        job = rt.submit_nowait(plain, 5, timeout=timeout)  # same options, a plain function
        assert job.kind == "thread"
        with pytest.raises(TypeError, match="priority"):
            rt.submit_nowait(_triple, 1, timeout=timeout, priority=1.5)  # type: ignore[call-overload]
        with no_hang():
            assert await job == 5
            assert await rt.join()


async def test_the_shared_options_let_their_token_go_when_the_runtime_closes() -> None:
    import gc
    import weakref

    token = aw.CancellationToken()
    ref = weakref.ref(token)
    async with aw.Runtime(1) as rt:
        with no_hang():
            assert await rt.run(_triple, 2, token=token) == 6
    del token
    gc.collect()
    assert ref() is None


# -- one deadline timer, one token registration per runtime ------------------------------------


async def test_a_shorter_deadline_after_a_longer_one_fires_first() -> None:
    long_one, short_one = Blocker(), Blocker()
    async with aw.Runtime(2) as rt:
        slow = rt.submit_nowait(long_one.run, 1, timeout=LONG)
        with no_hang():
            await long_one.started.wait()
        quick = rt.submit_nowait(short_one.run, 2, timeout=SHORT)  # re-arms the timer sooner
        with no_hang():
            assert await quick.wait() is aw.JobState.FAILED
        assert isinstance(quick.exception(), aw.JobTimeout)
        assert slow.state is aw.JobState.RUNNING
        long_one.release.set()
        with no_hang():
            assert await slow == 1
        await assert_workers_clean(rt)


async def test_deadlines_of_many_workers_each_fire_once() -> None:
    count = 6
    async with aw.Runtime(count) as rt:
        jobs = [rt.submit_nowait(forever, timeout=SHORT * (1 + i % 3)) for i in range(count)]
        with no_hang():
            for job in jobs:
                assert await job.wait() is aw.JobState.FAILED
        assert all(isinstance(job.exception(), aw.JobTimeout) for job in jobs)
        assert all(job.attempts == 1 for job in jobs)
        await assert_workers_clean(rt)


async def test_a_token_is_registered_once_per_runtime_and_let_go_when_its_jobs_end() -> None:
    token = aw.CancellationToken()
    blockers = [Blocker() for _ in range(5)]
    async with aw.Runtime(3) as first, aw.Runtime(2) as second:
        jobs = [
            (first if i < 3 else second).submit_nowait(b.run, i, token=token)
            for i, b in enumerate(blockers)
        ]
        assert len(token._callbacks) == 2  # one per runtime, not one per job
        with no_hang():
            for b in blockers:
                await b.started.wait()
        for b in blockers[:3]:
            b.release.set()
        with no_hang():
            assert [await job for job in jobs[:3]] == [0, 1, 2]
        assert len(token._callbacks) == 1  # the first runtime has no job with it left
        await asyncio.to_thread(token.cancel, "from a thread")  # cancels in the other one
        with no_hang():
            for job in jobs[3:]:
                assert await job.wait() is aw.JobState.CANCELLED
        assert not token._callbacks
        late = first.submit_nowait(_triple, 1, token=token)
        assert late.state is aw.JobState.CANCELLED  # at once: the token was cancelled
        assert late.exception() is not None
        assert str(late.exception()) == "from a thread"
        await assert_workers_clean(first)
        await assert_workers_clean(second)


async def test_a_token_cancel_reaches_its_running_pending_and_backing_off_jobs() -> None:
    token = aw.CancellationToken()
    running = Blocker()
    failed_once = asyncio.Event()

    async def fails() -> None:
        failed_once.set()
        raise ValueError("again")

    async with aw.Runtime(2) as rt:
        a = rt.submit_nowait(running.run, token=token)
        b = rt.submit_nowait(fails, token=token, retry=aw.Retry(attempts=5, backoff=LONG))
        with no_hang():
            await running.started.wait()
            await failed_once.wait()
        await all_blocked()
        rt.pause()
        c = rt.submit_nowait(_triple, 1, token=token)
        token.cancel("all")
        assert b.state is aw.JobState.CANCELLED  # it was waiting out its backoff
        assert c.state is aw.JobState.CANCELLED
        with no_hang():
            assert await a.wait() is aw.JobState.CANCELLED
        rt.resume()
        assert not token._callbacks
        await assert_workers_clean(rt)
