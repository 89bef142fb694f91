"""SyncRuntime: the runtime for sync programs, driven from plain threads.

Every test that runs jobs runs on both background loops (the ``loop`` fixture: asyncio and
uvloop). Nothing sleeps to synchronize: jobs report through ``threading.Event``s and the
test waits on those, with ``HANG`` as a bound that turns a hang into a failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import itertools
import operator
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import asyncworkers as aw
from _helpers import HANG_GUARD as HANG
from _helpers import LOOPS, double, loop_module


@pytest.fixture(params=LOOPS)
def loop(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def rt(loop: str) -> Iterator[aw.SyncRuntime]:
    """A started runtime on the fixture's loop; shut down (and its thread ended) after."""
    with aw.SyncRuntime(8, use_uvloop=loop == "uvloop") as runtime:
        yield runtime
    assert not loop_threads()


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("asyncworkers-sync-")]


def new_threads_end(before: set[threading.Thread]) -> list[threading.Thread]:
    """Join the threads started since *before* (bounded); return those still alive."""
    for thread in set(threading.enumerate()) - before:
        thread.join(HANG)
    return [t for t in set(threading.enumerate()) - before if t.is_alive()]


# -- job bodies ------------------------------------------------------------------------------


def triple(x: int) -> int:
    return 3 * x


async def fail_async(message: str) -> None:
    raise KeyError(message)


def fail_plain(message: str) -> None:
    raise ValueError(message)


async def wait_forever(started: threading.Event) -> None:
    started.set()
    await asyncio.sleep(3600)


def gated(started: threading.Event, gate: threading.Event) -> str:
    """A thread job that starts, then waits for the test to open the gate."""
    started.set()
    assert gate.wait(HANG)
    return "through"


def gated_then_check(started: threading.Event, gate: threading.Event) -> str:
    started.set()
    assert gate.wait(HANG)
    aw.check_cancelled()
    return "finished"


async def finish_in_reverse(i: int, n: int) -> int:
    for _ in range(n - i):  # later items finish first: only the order of yields is tested
        await asyncio.sleep(0)
    return i


# -- the basics ------------------------------------------------------------------------------


def test_the_loop_is_the_one_asked_for(rt: aw.SyncRuntime, loop: str) -> None:
    module = rt.run(loop_module)
    assert module.startswith("uvloop") if loop == "uvloop" else module.startswith("asyncio")
    assert rt.loop == loop
    assert f"loop={loop}" in repr(rt)
    assert "state=running" in repr(rt)


def test_submit_coroutine_and_plain_functions(rt: aw.SyncRuntime) -> None:
    coro_future = rt.submit(double, 21)
    plain_future = rt.submit(triple, 14)
    assert isinstance(coro_future, concurrent.futures.Future)
    assert coro_future.result(HANG) == 42
    assert plain_future.result(HANG) == 42
    assert coro_future.done()
    assert not coro_future.cancelled()


def test_job_options_pass_through(rt: aw.SyncRuntime) -> None:
    results: list[int] = []
    future = rt.submit(
        triple, 2, priority=aw.Priority.HIGH, name="three", callback=results.append, kind="thread"
    )
    assert future.result(HANG) == 6
    assert rt.join(HANG)
    assert results == [6]


def test_exceptions_propagate_with_their_type(rt: aw.SyncRuntime) -> None:
    with pytest.raises(KeyError, match="from a coroutine"):
        rt.submit(fail_async, "from a coroutine").result(HANG)
    future = rt.submit(fail_plain, "from a thread")
    assert isinstance(future.exception(HANG), ValueError)
    with pytest.raises(ValueError, match="from a thread"):
        future.result()
    with pytest.raises(ValueError, match="run"):
        rt.run(fail_plain, "run")


def test_run_returns_the_result(rt: aw.SyncRuntime) -> None:
    assert rt.run(double, 5) == 10
    assert rt.run(triple, 5) == 15
    assert rt.run(operator.add, 2, 3) == 5


def test_enqueue_a_work_unit_with_kwargs_and_callback(rt: aw.SyncRuntime) -> None:
    seen: list[str] = []

    def greet(name: str, *, punctuation: str) -> str:
        return f"hello {name}{punctuation}"

    unit: aw.WorkUnit[str] = aw.WorkUnit(
        greet, args=("ada",), kwargs={"punctuation": "!"}, callback=seen.append, name="greet"
    )
    assert rt.enqueue(unit).result(HANG) == "hello ada!"
    assert rt.join(HANG)
    assert seen == ["hello ada!"]


def test_job_timeout_reaches_the_future(rt: aw.SyncRuntime) -> None:
    started = threading.Event()
    future = rt.submit(wait_forever, started, timeout=0.01)
    with pytest.raises(aw.JobTimeout):
        future.result(HANG)


def test_process_jobs(rt: aw.SyncRuntime) -> None:
    assert rt.run(operator.mul, 6, 7, kind="process") == 42


# -- map -------------------------------------------------------------------------------------


def test_map_yields_in_input_order(rt: aw.SyncRuntime) -> None:
    n = 60
    assert list(rt.map(functools.partial(finish_in_reverse, n=n), range(n))) == list(range(n))
    assert list(rt.map(triple, range(100))) == [3 * i for i in range(100)]


def test_map_is_lazy_and_bounded_by_its_window(rt: aw.SyncRuntime) -> None:
    lock = threading.Lock()
    running = 0
    most = 0

    def tracked(i: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        with lock:
            running -= 1
        return i

    pulled = 0

    def endless() -> Iterator[int]:
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield i

    results = rt.map(tracked, endless(), window=5)
    assert pulled == 0  # nothing is read before the first result is asked for
    assert [next(results) for _ in range(50)] == list(range(50))
    assert pulled <= 50 + 5
    results.close()  # cancels what is still in flight
    assert rt.join(HANG)
    m = rt.metrics()
    assert m.submitted == pulled
    assert m.completed + m.cancelled == pulled
    assert most <= 5


def test_closing_map_cancels_coroutines_in_flight(rt: aw.SyncRuntime) -> None:
    started = [threading.Event() for _ in range(4)]

    async def first_or_forever(event: threading.Event | None) -> str:
        if event is None:
            return "first"
        await wait_forever(event)
        return "never"

    results = rt.map(first_or_forever, [None, *started], window=5)
    assert next(results) == "first"  # all five were submitted before the first result
    for event in started:
        assert event.wait(HANG)  # the other four are running
    results.close()
    assert rt.join(HANG)
    m = rt.metrics()
    assert (m.completed, m.cancelled) == (1, 4)


def test_map_raises_the_first_failure_and_cancels_the_rest(rt: aw.SyncRuntime) -> None:
    gate = threading.Event()

    def item(i: int) -> int:
        if i == 2:
            raise RuntimeError("item 2")
        if i > 2:
            assert gate.wait(HANG)
            aw.check_cancelled()
        return i

    results = rt.map(item, range(10), window=6)
    assert next(results) == 0
    assert next(results) == 1
    with pytest.raises(RuntimeError, match="item 2"):
        next(results)
    gate.set()
    assert rt.join(HANG)
    assert rt.metrics().cancelled >= 1


# -- many threads ------------------------------------------------------------------------------


def test_many_producer_threads(rt: aw.SyncRuntime) -> None:
    threads, per_thread = 8, 500
    results: list[list[int]] = [[] for _ in range(threads)]
    ready = threading.Barrier(threads)

    def produce(index: int) -> None:
        ready.wait(HANG)
        futures = []
        for i in range(per_thread):
            value = index * per_thread + i
            fn = double if i % 2 else triple
            futures.append((value, fn, rt.submit(fn, value)))
        for value, fn, future in futures:
            expected = 2 * value if fn is double else 3 * value
            assert future.result(HANG) == expected
            results[index].append(value)

    pool = [threading.Thread(target=produce, args=(k,)) for k in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(HANG)
    assert sum(len(r) for r in results) == threads * per_thread
    assert sorted(v for r in results for v in r) == list(range(threads * per_thread))
    m = rt.metrics()
    assert m.submitted == m.completed == threads * per_thread


def test_many_threads_call_run_and_enqueue_at_once(rt: aw.SyncRuntime) -> None:
    done: Counter[str] = Counter()
    lock = threading.Lock()

    def count(what: str) -> None:
        with lock:
            done[what] += 1

    def worker(index: int) -> None:
        for i in range(100):
            assert rt.run(triple, i) == 3 * i
            unit: aw.WorkUnit[int] = aw.WorkUnit(triple, args=(i,), callback=lambda _: count("cb"))
            assert rt.enqueue(unit).result(HANG) == 3 * i
            count("run")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(worker, k) for k in range(8)]:
            future.result(HANG)
    assert rt.join(HANG)
    assert done == {"run": 800, "cb": 800}


def test_futures_work_with_concurrent_futures_helpers(rt: aw.SyncRuntime) -> None:
    futures = [rt.submit(triple, i) for i in range(50)]
    _, not_done = concurrent.futures.wait(futures, timeout=HANG)
    assert not not_done
    assert sorted(f.result() for f in concurrent.futures.as_completed(futures, HANG)) == [
        3 * i for i in range(50)
    ]
    calls: list[int] = []
    rt.submit(triple, 1).add_done_callback(lambda f: calls.append(f.result()))
    assert rt.join(HANG)
    assert calls == [3]


# -- cancellation -------------------------------------------------------------------------------


def test_future_cancel_cancels_a_pending_job(loop: str) -> None:
    started, gate = threading.Event(), threading.Event()
    with aw.SyncRuntime(1, use_uvloop=loop == "uvloop") as rt:
        blocker = rt.submit(gated, started, gate)
        assert started.wait(HANG)
        pending = rt.submit(triple, 1)
        assert pending.cancel() is True
        assert pending.done()  # a pending job ends at once
        with pytest.raises(aw.JobCancelled, match="the future was cancelled"):
            pending.result()
        assert isinstance(pending.exception(), aw.JobCancelled)
        assert not pending.cancelled()  # it ended with JobCancelled, see the docs
        assert pending.cancel() is False
        gate.set()
        assert blocker.result(HANG) == "through"
        assert blocker.cancel() is False
    assert rt.metrics().cancelled == 1


def test_future_cancel_stops_a_running_coroutine(rt: aw.SyncRuntime) -> None:
    started = threading.Event()
    future = rt.submit(wait_forever, started)
    assert started.wait(HANG)
    assert future.cancel() is True
    with pytest.raises(aw.JobCancelled):
        future.result(HANG)


def test_future_of_a_cancelled_thread_job_ends_when_the_thread_stops(rt: aw.SyncRuntime) -> None:
    started, gate = threading.Event(), threading.Event()
    future = rt.submit(gated_then_check, started, gate)
    assert started.wait(HANG)
    assert future.cancel() is True
    assert not future.done()  # the thread is still in the job: the job has not ended
    gate.set()
    with pytest.raises(aw.JobCancelled):
        future.result(HANG)


def test_cancel_from_many_threads_at_once(rt: aw.SyncRuntime) -> None:
    started = threading.Event()
    future = rt.submit(wait_forever, started)
    assert started.wait(HANG)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: future.cancel(), range(8)))
    assert answers.count(True) >= 1
    with pytest.raises(aw.JobCancelled):
        future.result(HANG)


def test_token_cancel_reaches_the_futures(rt: aw.SyncRuntime) -> None:
    token = aw.CancellationToken()
    started = threading.Event()
    running = rt.submit(wait_forever, started, token=token)
    assert started.wait(HANG)
    queued = [rt.submit(triple, i, token=token, priority=aw.Priority.LOWEST) for i in range(3)]
    token.cancel("stop everything")
    futures: list[concurrent.futures.Future[Any]] = [running, *queued]
    for future in futures:
        exc = future.exception(HANG)
        assert isinstance(exc, aw.JobCancelled) or exc is None  # a queued one may have run
    with pytest.raises(aw.JobCancelled, match="stop everything") as info:
        running.result()
    assert info.value.reason == "stop everything"
    late = rt.submit(triple, 1, token=token)
    with pytest.raises(aw.JobCancelled):
        late.result(HANG)


def test_wrap_future_in_another_loop_sees_job_cancelled(rt: aw.SyncRuntime) -> None:
    started = threading.Event()
    future = rt.submit(wait_forever, started)
    assert started.wait(HANG)

    async def await_it() -> str:
        wrapped = asyncio.wrap_future(future)
        future.cancel()
        try:
            await wrapped
        except aw.JobCancelled:
            return "JobCancelled, and this task was not cancelled"
        return "no error"

    assert asyncio.run(await_it()) == "JobCancelled, and this task was not cancelled"


# -- shutdown ------------------------------------------------------------------------------------


def test_shutdown_waits_for_every_job(loop: str) -> None:
    rt = aw.SyncRuntime(2, use_uvloop=loop == "uvloop").start()
    futures = [rt.submit(double if i % 2 else triple, i) for i in range(200)]
    rt.shutdown(wait=True)
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [2 * i if i % 2 else 3 * i for i in range(200)]
    assert not loop_threads()


def test_shutdown_cancel_pending_drains_only_the_running_jobs(loop: str) -> None:
    started, gate = threading.Event(), threading.Event()
    rt = aw.SyncRuntime(1, use_uvloop=loop == "uvloop").start()
    running = rt.submit(gated, started, gate)
    assert started.wait(HANG)
    queued = [rt.submit(triple, i) for i in range(5)]
    stopper = threading.Thread(target=rt.shutdown, kwargs={"cancel_pending": True})
    stopper.start()
    for future in queued:  # cancelled at the start of the shutdown, while `running` runs
        assert isinstance(future.exception(HANG), aw.JobCancelled)
    assert not running.done()
    gate.set()
    stopper.join(HANG)
    assert not stopper.is_alive()
    assert running.result() == "through"
    with pytest.raises(aw.RuntimeClosed):
        rt.submit(triple, 1)


def test_shutdown_without_wait_cancels_running_jobs(loop: str) -> None:
    started = threading.Event()
    rt = aw.SyncRuntime(2, use_uvloop=loop == "uvloop").start()
    future = rt.submit(wait_forever, started)
    assert started.wait(HANG)
    rt.shutdown(wait=False)
    assert isinstance(future.exception(0), aw.JobCancelled)


def test_shutdown_timeout_then_cancel(loop: str) -> None:
    started = threading.Event()
    rt = aw.SyncRuntime(2, use_uvloop=loop == "uvloop").start()
    future = rt.submit(wait_forever, started)
    assert started.wait(HANG)
    rt.shutdown(timeout=0.05)
    assert isinstance(future.exception(0), aw.JobCancelled)


def test_shutdown_timeout_bounds_the_drain_of_the_block(loop: str) -> None:
    started = threading.Event()
    with aw.SyncRuntime(shutdown_timeout=0.05, use_uvloop=loop == "uvloop") as rt:
        future = rt.submit(wait_forever, started)
        assert started.wait(HANG)
    assert isinstance(future.exception(0), aw.JobCancelled)


def test_runtime_closed_after_shutdown(loop: str) -> None:
    rt = aw.SyncRuntime(use_uvloop=loop == "uvloop")
    with rt:
        assert rt.run(triple, 1) == 3
    assert "state=closed" in repr(rt)
    with pytest.raises(aw.RuntimeClosed):
        rt.submit(triple, 1)
    with pytest.raises(aw.RuntimeClosed):
        rt.enqueue(aw.WorkUnit(triple, args=(1,)))
    with pytest.raises(aw.RuntimeClosed):
        rt.run(triple, 1)
    with pytest.raises(aw.RuntimeClosed):
        rt.map(triple, [1])
    rt.shutdown()  # idempotent
    rt.shutdown(wait=False)
    assert rt.join(0) is True
    assert rt.metrics().completed == 1
    with pytest.raises(RuntimeError, match="only once"):
        rt.start()


def test_shutdown_from_many_threads_at_once(loop: str) -> None:
    rt = aw.SyncRuntime(use_uvloop=loop == "uvloop").start()
    futures = [rt.submit(double, i) for i in range(100)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for f in [pool.submit(rt.shutdown) for _ in range(8)]:
            f.result(HANG)  # each returns once the loop thread has ended
            assert not loop_threads()
    assert [f.result(0) for f in futures] == [2 * i for i in range(100)]


def test_submit_racing_shutdown_never_leaves_a_future_hanging(loop: str) -> None:
    rt = aw.SyncRuntime(use_uvloop=loop == "uvloop").start()
    futures: list[concurrent.futures.Future[int]] = []
    go = threading.Barrier(5)

    def produce() -> None:
        go.wait(HANG)
        for i in range(2000):
            try:
                futures.append(rt.submit(triple, i))
            except aw.RuntimeClosed:
                return

    producers = [threading.Thread(target=produce) for _ in range(4)]
    for thread in producers:
        thread.start()
    go.wait(HANG)
    rt.shutdown(wait=False)
    for thread in producers:
        thread.join(HANG)
    for future in futures:
        exc = future.exception(HANG)  # every future ends, whichever way
        assert exc is None or isinstance(exc, aw.JobCancelled | aw.RuntimeClosed)


def test_not_started() -> None:
    rt = aw.SyncRuntime()
    with pytest.raises(RuntimeError, match="not started"):
        rt.submit(triple, 1)
    assert rt.join() is True
    assert rt.metrics().submitted == 0
    assert "state=new" in repr(rt)
    rt.shutdown()  # a never-started runtime just closes
    with pytest.raises(RuntimeError, match="only once"):
        rt.start()


def test_two_runtimes_side_by_side() -> None:
    with aw.SyncRuntime(use_uvloop=False) as one, aw.SyncRuntime(use_uvloop=True) as two:
        assert len(loop_threads()) == 2
        futures = [rt.submit(double, i) for i in range(50) for rt in (one, two)]
        assert sum(f.result(HANG) for f in futures) == 2 * 2 * sum(range(50))
        assert one.run(loop_module) != two.run(loop_module)
    assert not loop_threads()


# -- threads left behind ----------------------------------------------------------------------


def test_no_thread_is_left_after_the_block(loop: str) -> None:
    before = set(threading.enumerate())
    with aw.SyncRuntime(4, use_uvloop=loop == "uvloop") as rt:
        assert loop_threads()
        assert rt.run(triple, 1) == 3  # starts an anyio worker thread too
        assert rt.run(double, 1) == 2
    assert not loop_threads()  # joined by the shutdown
    assert new_threads_end(before) == []  # idle worker threads end with the loop


def test_with_block_exiting_by_exception(loop: str) -> None:
    before = set(threading.enumerate())
    started = threading.Event()
    futures: list[concurrent.futures.Future[None]] = []

    def block() -> None:
        with aw.SyncRuntime(use_uvloop=loop == "uvloop") as rt:
            futures.append(rt.submit(wait_forever, started))
            assert started.wait(HANG)
            raise LookupError("boom")

    with pytest.raises(LookupError, match="boom"):
        block()
    assert isinstance(futures[0].exception(0), aw.JobCancelled)  # shutdown(wait=False)
    assert new_threads_end(before) == []


def test_with_block_exiting_by_keyboard_interrupt(loop: str) -> None:
    before = set(threading.enumerate())
    started = threading.Event()
    futures: list[concurrent.futures.Future[Any]] = []

    def block() -> None:
        with aw.SyncRuntime(1, use_uvloop=loop == "uvloop") as rt:
            futures.append(rt.submit(wait_forever, started))
            assert started.wait(HANG)
            futures.append(rt.submit(triple, 1))  # still queued
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        block()
    for future in futures:
        assert isinstance(future.exception(0), aw.JobCancelled)
    assert new_threads_end(before) == []


needs_signals = pytest.mark.skipif(
    sys.platform == "win32" or threading.current_thread() is not threading.main_thread(),
    reason="sends SIGINT to the main thread",
)


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt in the main thread, as in an interactive program.

    A process started in the background by a shell without job control (``cmd &`` in a
    script, some CI runners) inherits SIGINT ignored, and Python then keeps it ignored: the
    interrupt these tests send would never arrive.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def interrupt_main() -> None:
    main = threading.main_thread().ident
    assert main is not None
    signal.pthread_kill(main, signal.SIGINT)


@needs_signals
@pytest.mark.usefixtures("sigint_raises")
def test_ctrl_c_while_blocked_on_a_result(loop: str) -> None:
    before = set(threading.enumerate())
    started = threading.Event()
    futures: list[concurrent.futures.Future[None]] = []

    def block() -> None:
        with aw.SyncRuntime(use_uvloop=loop == "uvloop") as rt:
            futures.append(rt.submit(wait_forever, started))
            assert started.wait(HANG)
            rt.submit(interrupt_main)
            futures[0].result(HANG)  # interrupted

    with pytest.raises(KeyboardInterrupt):
        block()
    assert isinstance(futures[0].exception(0), aw.JobCancelled)
    assert new_threads_end(before) == []


@needs_signals
@pytest.mark.usefixtures("sigint_raises")
def test_ctrl_c_while_the_block_drains(loop: str) -> None:
    before = set(threading.enumerate())
    started = threading.Event()
    futures: list[concurrent.futures.Future[None]] = []

    def interrupt_once_closing(rt: aw.SyncRuntime) -> None:
        # Nothing signals the start of a drain but the runtime's state, so this polls it
        # (bounded); the interrupt must come while the main thread waits in the drain.
        deadline = time.monotonic() + HANG
        while "state=closing" not in repr(rt):  # the main thread is in shutdown(wait=True)
            assert time.monotonic() < deadline
            time.sleep(0.001)
        interrupt_main()

    def block() -> None:
        # shutdown_timeout bounds the drain: if the interrupt never came, the block would
        # end without KeyboardInterrupt (a failure) instead of waiting forever.
        with aw.SyncRuntime(use_uvloop=loop == "uvloop", shutdown_timeout=HANG) as rt:
            futures.append(rt.submit(wait_forever, started))  # never ends: the drain waits
            assert started.wait(HANG)
            rt.submit(interrupt_once_closing, rt)

    with pytest.raises(KeyboardInterrupt):
        block()
    assert isinstance(futures[0].exception(0), aw.JobCancelled)
    assert new_threads_end(before) == []


@needs_signals
@pytest.mark.usefixtures("sigint_raises")
def test_ctrl_c_in_run_cancels_its_job_and_the_runtime_goes_on(loop: str) -> None:
    started = threading.Event()

    def interrupt_when_started() -> None:
        assert started.wait(HANG)
        interrupt_main()

    with aw.SyncRuntime(use_uvloop=loop == "uvloop") as rt:
        rt.submit(interrupt_when_started)
        with pytest.raises(KeyboardInterrupt):
            rt.run(wait_forever, started, timeout=HANG)  # the bound turns a hang into a failure
        assert rt.join(HANG)
        assert rt.metrics().cancelled == 1
        assert rt.run(triple, 2) == 6


def test_an_open_runtime_is_shut_down_at_exit(tmp_path: Any) -> None:
    script = tmp_path / "forgotten.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio
            import threading

            import asyncworkers as aw

            started = threading.Event()

            async def forever() -> None:
                started.set()
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    print("cancelled at exit", flush=True)
                    raise

            rt = aw.SyncRuntime().start()
            rt.submit(forever)
            assert started.wait(30)
            print("leaving without shutdown", flush=True)
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=HANG, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["leaving without shutdown", "cancelled at exit"]


# -- from the runtime's own loop ------------------------------------------------------------------


def test_blocking_calls_from_the_loop_thread_raise(rt: aw.SyncRuntime) -> None:
    async def inside() -> list[tuple[str, str]]:
        calls: list[tuple[str, Callable[[], object]]] = [
            ("run", lambda: rt.run(triple, 1)),
            ("map", lambda: rt.map(triple, [1])),
            ("join", lambda: rt.join()),
            ("shutdown", lambda: rt.shutdown()),
            ("result", lambda: rt.submit(double, 1).result()),
        ]
        outcomes = []
        for name, call in calls:
            try:
                call()
            except RuntimeError as exc:
                outcomes.append((name, str(exc)))
        return outcomes

    outcomes = rt.run(inside)
    assert [name for name, _ in outcomes] == ["run", "map", "join", "shutdown", "result"]
    assert all("deadlock" in message for _, message in outcomes)


def test_join_and_shutdown_from_its_own_thread_job_raise(rt: aw.SyncRuntime) -> None:
    def inside() -> list[str]:
        messages = []
        for call in (rt.join, rt.shutdown):
            try:
                call()
            except RuntimeError as exc:
                messages.append(str(exc))
        assert rt.run(triple, 2) == 6  # waiting for another job is fine
        return messages

    messages = rt.run(inside, name="inside")
    assert len(messages) == 2
    assert all("'inside'" in m and "wait for that job itself" in m for m in messages)


def test_submit_from_the_loop_thread_works(rt: aw.SyncRuntime) -> None:
    async def fan_out() -> list[concurrent.futures.Future[int]]:
        futures = [rt.submit(double, i) for i in range(5)]
        assert rt.metrics().submitted >= 6
        return futures

    futures = rt.run(fan_out)
    assert [f.result(HANG) for f in futures] == [0, 2, 4, 6, 8]


def test_cancel_from_the_loop_thread(rt: aw.SyncRuntime) -> None:
    started = threading.Event()
    future = rt.submit(wait_forever, started)
    assert started.wait(HANG)

    async def cancel_it() -> bool:
        return future.cancel()

    assert rt.run(cancel_it) is True
    with pytest.raises(aw.JobCancelled):
        future.result(HANG)


# -- backpressure, join, metrics ------------------------------------------------------------------


def test_max_pending_makes_submit_wait_for_room(loop: str) -> None:
    started, gate = threading.Event(), threading.Event()
    with aw.SyncRuntime(1, max_pending=2, use_uvloop=loop == "uvloop") as rt:
        blocker = rt.submit(gated, started, gate)
        assert started.wait(HANG)
        queued = [rt.submit(triple, i) for i in range(2)]
        assert rt.metrics().pending == 2
        submitted = threading.Event()
        late: list[concurrent.futures.Future[int]] = []

        def submit_one_more() -> None:
            late.append(rt.submit(triple, 10))
            submitted.set()

        producer = threading.Thread(target=submit_one_more)
        producer.start()
        assert not submitted.is_set()  # it cannot have got in: the queue is full
        gate.set()
        producer.join(HANG)
        assert submitted.is_set()
        assert blocker.result(HANG) == "through"
        assert [f.result(HANG) for f in [*queued, *late]] == [0, 3, 30]
        unit: aw.WorkUnit[int] = aw.WorkUnit(triple, args=(4,))
        assert rt.enqueue(unit).result(HANG) == 12
        assert list(rt.map(triple, range(10))) == [3 * i for i in range(10)]


def test_join_and_metrics_see_every_job_submitted_before(rt: aw.SyncRuntime) -> None:
    started, gate = threading.Event(), threading.Event()
    blocker = rt.submit(gated, started, gate)
    futures = [rt.submit(triple, i) for i in range(100)]
    assert rt.metrics().submitted == 101  # counted at once, though handed in asynchronously
    assert started.wait(HANG)
    assert rt.join(timeout=0) is False  # the blocker is still running
    gate.set()
    assert rt.join(HANG) is True
    assert blocker.done()
    assert all(f.done() for f in futures)
    m = rt.metrics()
    assert (m.submitted, m.completed, m.running, m.pending) == (101, 101, 0, 0)


# -- bad input ----------------------------------------------------------------------------


def test_bad_input_raises_in_the_calling_thread(rt: aw.SyncRuntime) -> None:
    with pytest.raises(TypeError, match="callable"):
        rt.submit(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="priority"):
        rt.submit(triple, 1, priority="high")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="unknown option"):
        rt.submit(triple, 1, retries=3)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="timeout"):
        rt.submit(triple, 1, timeout=0)
    with pytest.raises(TypeError, match="pickl"):
        rt.submit(lambda: None, kind="process")
    with pytest.raises(TypeError, match="WorkUnit"):
        rt.enqueue(triple)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tuple"):
        rt.enqueue(aw.WorkUnit(triple, args=[1]))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        rt.map(42, [1])  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="window"):
        rt.map(triple, [1], window=0)
    with pytest.raises(ValueError, match="timeout"):
        rt.join(-1)
    with pytest.raises(TypeError, match="timeout"):
        rt.shutdown(timeout="soon")  # type: ignore[arg-type]
    assert rt.metrics().submitted == 0  # nothing reached the runtime


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="workers"):
        aw.SyncRuntime(0)
    with pytest.raises(TypeError, match="max_pending"):
        aw.SyncRuntime(max_pending=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="use_uvloop"):
        aw.SyncRuntime(use_uvloop="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shutdown_timeout"):
        aw.SyncRuntime(shutdown_timeout=-1)
    assert not loop_threads()
