"""LeanFuture (``_core/_future.py``): every use of a ``concurrent.futures.Future`` works on it.

It skips ``Future.__init__`` and overrides the hot methods, so these tests drive it through
the stock API and the stock functions that reach into a future's internals
(``concurrent.futures.wait``, ``as_completed``, ``asyncio.wrap_future``). A future is
finished from another thread, as SyncRuntime's loop thread does; waits are bounded by
``GUARD`` and nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from _helpers import HANG_GUARD as GUARD
from asyncworkers._core._future import LeanFuture


@contextmanager
def finished_by_a_thread(finish: Callable[[], object], when: threading.Event) -> Iterator[None]:
    """Run *finish* in another thread once *when* is set; join it on the way out."""

    def run() -> None:
        assert when.wait(GUARD), "never told to finish"
        finish()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield
    finally:
        when.set()
        thread.join(GUARD)
    assert not thread.is_alive()


def test_result_waits_for_a_result_set_by_another_thread() -> None:
    future: LeanFuture[int] = LeanFuture()
    go = threading.Event()
    with finished_by_a_thread(lambda: future.set_result(7), go):
        assert not future.done()
        go.set()
        assert future.result(GUARD) == 7
    assert future.done()
    assert future.exception() is None
    assert not future.running()
    assert not future.cancelled()
    assert "returned int" in repr(future)


def test_exception_and_result_report_an_exception_set_by_another_thread() -> None:
    future: LeanFuture[int] = LeanFuture()
    error = LookupError("no such row")
    go = threading.Event()
    with finished_by_a_thread(lambda: future.set_exception(error), go):
        go.set()
        assert future.exception(GUARD) is error
    with pytest.raises(LookupError, match="no such row"):
        future.result()
    assert "raised LookupError" in repr(future)


@pytest.mark.parametrize("timeout", [0.0, -1.0, 0.01])
def test_a_wait_that_runs_out_raises_timeout_error(timeout: float) -> None:
    future: LeanFuture[int] = LeanFuture()
    with pytest.raises(TimeoutError):
        future.result(timeout)
    with pytest.raises(TimeoutError):
        future.exception(timeout)
    assert "state=pending" in repr(future)
    future.set_result(1)  # and the future still finishes normally
    assert future.result(timeout) == 1


def test_every_waiting_thread_wakes() -> None:
    future: LeanFuture[str] = LeanFuture()
    results: list[str] = []
    waiting = threading.Barrier(5)

    def wait() -> None:
        waiting.wait(GUARD)
        results.append(future.result(GUARD))

    threads = [threading.Thread(target=wait) for _ in range(4)]
    for thread in threads:
        thread.start()
    waiting.wait(GUARD)  # all four are about to wait (or waiting)
    future.set_result("done")
    for thread in threads:
        thread.join(GUARD)
    assert results == ["done"] * 4


def test_finishing_twice_raises_invalid_state_error() -> None:
    future: LeanFuture[int] = LeanFuture()
    future.set_result(1)
    with pytest.raises(concurrent.futures.InvalidStateError):
        future.set_result(2)
    with pytest.raises(concurrent.futures.InvalidStateError):
        future.set_exception(ValueError())
    assert future.result() == 1


def test_done_callbacks_before_and_after_the_end(caplog: pytest.LogCaptureFixture) -> None:
    future: LeanFuture[int] = LeanFuture()
    calls: list[tuple[str, int]] = []

    def broken(_: concurrent.futures.Future[int]) -> None:
        raise RuntimeError("callback bug")

    future.add_done_callback(lambda f: calls.append(("before", f.result())))
    future.add_done_callback(broken)  # logged, as by any future, and the next still runs
    future.add_done_callback(lambda f: calls.append(("next", f.result())))
    with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
        future.set_result(3)
    assert calls == [("before", 3), ("next", 3)]
    assert "exception calling callback" in caplog.text
    future.add_done_callback(lambda f: calls.append(("after", f.result())))
    assert calls[-1] == ("after", 3)


def test_a_callback_added_while_another_thread_finishes_runs_exactly_once() -> None:
    for _ in range(300):
        future: LeanFuture[int] = LeanFuture()
        calls: list[int] = []
        start = threading.Barrier(2)

        def finish(future: LeanFuture[int] = future, start: threading.Barrier = start) -> None:
            start.wait(GUARD)
            future.set_result(1)

        thread = threading.Thread(target=finish)
        thread.start()
        start.wait(GUARD)

        def record(f: concurrent.futures.Future[int], calls: list[int] = calls) -> None:
            calls.append(f.result())

        future.add_done_callback(record)
        thread.join(GUARD)
        assert calls == [1]


def test_concurrent_futures_wait_and_as_completed() -> None:
    futures: list[LeanFuture[int]] = [LeanFuture() for _ in range(3)]
    first = threading.Event()
    with finished_by_a_thread(lambda: futures[1].set_result(1), first):
        first.set()
        done, pending = concurrent.futures.wait(
            futures, GUARD, return_when=concurrent.futures.FIRST_COMPLETED
        )
    assert done == {futures[1]}
    assert pending == {futures[0], futures[2]}
    rest = threading.Event()

    def finish_the_rest() -> None:
        futures[2].set_exception(ValueError("two"))
        futures[0].set_result(0)

    with finished_by_a_thread(finish_the_rest, rest):
        rest.set()
        order = list(concurrent.futures.as_completed(futures, GUARD))
    assert order[0] is futures[1]  # finished before as_completed() began
    assert set(order) == set(futures)
    done, pending = concurrent.futures.wait(futures, 0)
    assert (len(done), pending) == (3, set())


def test_a_thread_waiting_on_the_condition_itself_is_woken() -> None:
    # Stock code that waits on _condition (as Future.result() itself does) must be woken too.
    future: LeanFuture[int] = LeanFuture()
    seen: list[bool] = []
    waiting = threading.Event()

    def wait_on_condition() -> None:
        with future._condition:
            waiting.set()
            seen.append(future._condition.wait_for(future.done, GUARD))

    thread = threading.Thread(target=wait_on_condition)
    thread.start()
    assert waiting.wait(GUARD)
    future.set_result(5)  # takes the lock, so the waiter is inside wait_for() by now
    thread.join(GUARD)
    assert seen == [True]


async def test_asyncio_wrap_future_sees_results_and_exceptions() -> None:
    ok: LeanFuture[int] = LeanFuture()
    failed: LeanFuture[int] = LeanFuture()
    loop = asyncio.get_running_loop()

    def finish() -> None:
        ok.set_result(9)
        failed.set_exception(KeyError("k"))

    wrapped_ok, wrapped_failed = asyncio.wrap_future(ok), asyncio.wrap_future(failed)
    await loop.run_in_executor(None, finish)
    async with asyncio.timeout(GUARD):
        assert await wrapped_ok == 9
        with pytest.raises(KeyError):
            await wrapped_failed


def test_it_is_a_concurrent_futures_future() -> None:
    future: Any = LeanFuture()
    assert isinstance(future, concurrent.futures.Future)
    assert future.set_running_or_notify_cancel() is True  # the stock method, on our fields
    assert future.running()
    future.set_result(None)
    assert future.done()
    assert future.result() is None
