"""CancellationToken on its own: callbacks, children, waiting (async and blocking), scopes."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading

import pytest

import asyncworkers as aw
from _helpers import HANG_GUARD, no_hang, until_blocked


def test_new_token_is_active() -> None:
    token = aw.CancellationToken()
    assert not token.cancelled
    assert token.reason is None
    token.raise_if_cancelled()  # does nothing
    assert "active" in repr(token)


def test_cancel_sets_state_and_reason_once() -> None:
    token = aw.CancellationToken()
    assert token.cancel("first") is True
    assert token.cancelled
    assert token.reason == "first"
    assert token.cancel("second") is False  # idempotent: the first reason stays
    assert token.reason == "first"
    assert "cancelled" in repr(token)
    assert "first" in repr(token)


def test_cancel_without_reason() -> None:
    token = aw.CancellationToken()
    assert token.cancel() is True
    assert token.cancelled
    assert token.reason is None


def test_cancel_reason_must_be_a_string() -> None:
    token = aw.CancellationToken()
    with pytest.raises(TypeError, match="reason") as info:
        token.cancel(5)  # type: ignore[arg-type]
    assert "5" in str(info.value)
    assert not token.cancelled


def test_raise_if_cancelled_raises_job_cancelled_with_reason() -> None:
    token = aw.CancellationToken()
    token.cancel("stop now")
    with pytest.raises(aw.JobCancelled) as info:
        token.raise_if_cancelled()
    assert info.value.reason == "stop now"


def test_registered_callback_runs_once_on_cancel() -> None:
    token = aw.CancellationToken()
    calls: list[str] = []
    token.register(lambda: calls.append("a"))
    token.register(lambda: calls.append("b"))
    assert calls == []
    token.cancel()
    token.cancel()
    assert sorted(calls) == ["a", "b"]


def test_register_on_cancelled_token_calls_at_once() -> None:
    token = aw.CancellationToken()
    token.cancel()
    calls: list[int] = []
    unregister = token.register(lambda: calls.append(1))
    assert calls == [1]
    unregister()  # harmless
    token.cancel()
    assert calls == [1]


def test_unregister_before_cancel() -> None:
    token = aw.CancellationToken()
    calls: list[str] = []
    unregister = token.register(lambda: calls.append("gone"))
    token.register(lambda: calls.append("kept"))
    unregister()
    unregister()  # twice is fine
    token.cancel()
    assert calls == ["kept"]


def test_register_needs_a_callable() -> None:
    with pytest.raises(TypeError, match="callable") as info:
        aw.CancellationToken().register(42)  # type: ignore[arg-type]
    assert "42" in str(info.value)


def test_a_raising_callback_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = aw.CancellationToken()
    calls: list[str] = []

    def bad() -> None:
        raise RuntimeError("callback bug")

    token.register(lambda: calls.append("before"))
    token.register(bad)
    token.register(lambda: calls.append("after"))
    with caplog.at_level(logging.ERROR, logger="asyncworkers"):
        assert token.cancel() is True
    assert sorted(calls) == ["after", "before"]
    assert any(
        record.exc_info is not None and "callback bug" in str(record.exc_info[1])
        for record in caplog.records
    )


def test_child_is_cancelled_with_its_parent_and_reason() -> None:
    parent = aw.CancellationToken()
    child = parent.child()
    grandchild = child.child()
    assert not child.cancelled
    parent.cancel("parent stopped")
    assert child.cancelled
    assert child.reason == "parent stopped"
    assert grandchild.cancelled
    assert grandchild.reason == "parent stopped"


def test_cancelling_a_child_leaves_the_parent_alone() -> None:
    parent = aw.CancellationToken()
    child = parent.child()
    sibling = parent.child()
    child.cancel("just me")
    assert child.cancelled
    assert not parent.cancelled
    assert not sibling.cancelled
    parent.cancel("all")
    assert sibling.reason == "all"
    assert child.reason == "just me"  # already cancelled: keeps its own reason


def test_child_of_a_cancelled_parent_starts_cancelled() -> None:
    parent = aw.CancellationToken()
    parent.cancel("early")
    child = parent.child()
    assert child.cancelled
    assert child.reason == "early"


def test_dropped_child_does_not_stay_registered_on_the_parent() -> None:
    parent = aw.CancellationToken()
    for _ in range(100):
        parent.child()
    gc.collect()
    assert len(parent._callbacks) == 0
    parent.cancel()  # nothing left to call, nothing breaks


def test_concurrent_cancel_from_threads_wins_once() -> None:
    token = aw.CancellationToken()
    calls: list[int] = []
    token.register(lambda: calls.append(1))
    barrier = threading.Barrier(8)
    results: list[bool] = []
    lock = threading.Lock()

    def racer(index: int) -> None:
        barrier.wait()
        won = token.cancel(f"thread {index}")
        with lock:
            results.append(won)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
    assert calls == [1]
    assert token.reason is not None
    assert token.reason.startswith("thread ")


def test_wait_blocking_returns_true_at_once_when_cancelled() -> None:
    token = aw.CancellationToken()
    token.cancel()
    assert token.wait_blocking() is True
    assert token.wait_blocking(timeout=0) is True


def test_wait_blocking_times_out_with_false() -> None:
    token = aw.CancellationToken()
    assert token.wait_blocking(timeout=0) is False
    assert token.wait_blocking(timeout=0.01) is False


def test_wait_blocking_rejects_negative_timeout() -> None:
    with pytest.raises(ValueError, match="timeout") as info:
        aw.CancellationToken().wait_blocking(timeout=-1)
    assert "-1" in str(info.value)


def test_wait_blocking_in_a_thread_wakes_on_cancel() -> None:
    token = aw.CancellationToken()
    started = threading.Event()
    result: list[bool] = []

    def waiter() -> None:
        started.set()
        result.append(token.wait_blocking())

    thread = threading.Thread(target=waiter)
    thread.start()
    assert started.wait(HANG_GUARD)
    token.cancel("go")
    thread.join(HANG_GUARD)
    assert not thread.is_alive()
    assert result == [True]


def test_wait_blocking_several_threads() -> None:
    token = aw.CancellationToken()
    results: list[bool] = []
    lock = threading.Lock()

    def waiter() -> None:
        woke = token.wait_blocking(timeout=HANG_GUARD)
        with lock:
            results.append(woke)

    threads = [threading.Thread(target=waiter) for _ in range(4)]
    for thread in threads:
        thread.start()
    token.cancel()
    for thread in threads:
        thread.join()
    assert results == [True] * 4


async def test_wait_returns_at_once_when_cancelled() -> None:
    token = aw.CancellationToken()
    token.cancel()
    with no_hang():
        await token.wait()


async def test_wait_wakes_on_cancel_in_the_loop() -> None:
    token = aw.CancellationToken()
    task = asyncio.create_task(token.wait())
    await until_blocked(task)
    token.cancel()
    with no_hang():
        await task
    assert not token._callbacks  # the waiter unregistered itself


async def test_cancel_from_another_thread_reaches_a_waiting_coroutine() -> None:
    token = aw.CancellationToken()
    loop_thread = threading.get_ident()
    woke_in: list[int] = []

    async def waiter() -> None:
        await token.wait()
        woke_in.append(threading.get_ident())

    task = asyncio.create_task(waiter())
    await until_blocked(task)
    thread = threading.Thread(target=token.cancel, args=("from a thread",))
    thread.start()
    with no_hang():
        await task
    thread.join()
    assert woke_in == [loop_thread]
    assert token.reason == "from a thread"


async def test_a_cancelled_waiter_unregisters() -> None:
    token = aw.CancellationToken()
    task = asyncio.create_task(token.wait())
    await until_blocked(task)
    assert len(token._callbacks) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not token._callbacks
    token.cancel()  # nothing left to wake


async def test_scope_cancels_the_block_and_code_after_it_runs() -> None:
    token = aw.CancellationToken()
    entered = asyncio.Event()
    trace: list[str] = []

    async def body() -> None:
        with token.scope() as scope:
            entered.set()
            await asyncio.Event().wait()  # forever, unless the token cancels the block
            trace.append("not reached")
        trace.append(f"after, caught={scope.cancelled_caught}")
        await asyncio.sleep(0)  # the task itself is not cancelled
        trace.append("still running")

    task = asyncio.create_task(body())
    with no_hang():
        await entered.wait()
    token.cancel()
    with no_hang():
        await task
    assert trace == ["after, caught=True", "still running"]
    assert not token._callbacks


async def test_scope_cancelled_from_another_thread() -> None:
    token = aw.CancellationToken()
    entered = asyncio.Event()

    async def body() -> bool:
        with token.scope() as scope:
            entered.set()
            await asyncio.Event().wait()
        return scope.cancelled_caught

    task = asyncio.create_task(body())
    with no_hang():
        await entered.wait()
    thread = threading.Thread(target=token.cancel)
    thread.start()
    with no_hang():
        assert await task is True
    thread.join()


async def test_scope_of_an_already_cancelled_token_ends_at_the_first_await() -> None:
    token = aw.CancellationToken()
    token.cancel()
    trace: list[str] = []
    with no_hang(), token.scope() as scope:
        trace.append("entered")
        await asyncio.Event().wait()
        trace.append("not reached")
    assert trace == ["entered"]
    assert scope.cancelled_caught


async def test_scope_not_cancelled_runs_to_the_end_and_unregisters() -> None:
    token = aw.CancellationToken()
    with token.scope() as scope:
        await asyncio.sleep(0)
    assert not scope.cancelled_caught
    assert not token._callbacks
    token.cancel()  # after the block: nothing to cancel
    await asyncio.sleep(0)


async def test_scope_of_a_child_token_is_cancelled_by_the_parent() -> None:
    parent = aw.CancellationToken()
    child = parent.child()
    entered = asyncio.Event()

    async def body() -> bool:
        with child.scope() as scope:
            entered.set()
            await asyncio.Event().wait()
        return scope.cancelled_caught

    task = asyncio.create_task(body())
    with no_hang():
        await entered.wait()
    parent.cancel()
    with no_hang():
        assert await task is True


def test_check_cancelled_outside_a_job_does_nothing() -> None:
    assert aw.current_job() is None
    aw.check_cancelled()


async def test_check_cancelled_outside_a_job_does_nothing_in_async_code() -> None:
    assert aw.current_job() is None
    aw.check_cancelled()
