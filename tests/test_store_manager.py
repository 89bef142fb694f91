"""The Manager in-process, on every store: outcomes, retries, hostile rows, worker groups,
pause, stop with drain and release, lease loss, and claims bounded by the concurrency."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import anyio
import pytest

import asyncworkers as aw
from _helpers import no_hang
from _store_support import StoreFactory, opened, query, steal_claim
from asyncworkers.store import Manager, Store, TaskRegistry

POLL = 0.05  # seconds: quick looks for work, so the tests do not wait on the poll


async def until(what: str, check: Any) -> None:
    """Wait for an awaitable-returning predicate to hold (hang guard, never a speed check)."""
    with no_hang():
        while not await check():
            await anyio.sleep(0.01)


async def state_of(store: Store, job_id: int) -> str:
    record = await store.get(job_id)
    assert record is not None
    return record.state


async def test_runs_jobs_and_stores_results(store_factory: StoreFactory) -> None:
    tasks = TaskRegistry()

    @tasks.task("add")
    async def add(a: int, b: int) -> int:
        return a + b

    @tasks.task("shout", kind="thread")
    def shout(text: str) -> str:
        return text.upper()

    async with opened(store_factory) as store:
        ids = [await tasks.enqueue(store, "add", {"a": i, "b": 1}) for i in range(20)]
        text = await tasks.enqueue(store, "shout", {"text": "hi"})
        async with Manager(store, tasks, concurrency=4, poll_interval=POLL) as manager:
            with no_hang():
                assert [await store.result(i) for i in ids] == [i + 1 for i in range(20)]
                assert await store.result(text) == "HI"
        m = manager.metrics()
        assert (m.claimed, m.succeeded, m.failed, m.dead, m.running) == (21, 21, 0, 0, 0)
        assert m.claim_latency.count >= 1
        assert (await store.counts())["succeeded"] == 21


async def test_retries_with_the_task_policy_then_succeeds(store_factory: StoreFactory) -> None:
    tasks = TaskRegistry()
    runs: list[int] = []

    @tasks.task("flaky", retry=aw.Retry(attempts=3, backoff=0.01, jitter=0.5))
    async def flaky() -> int:
        runs.append(1)
        if len(runs) < 3:
            raise ConnectionError(f"run {len(runs)}")
        return len(runs)

    async with opened(store_factory) as store:
        job_id = await tasks.enqueue(store, "flaky")
        record = await store.get(job_id)
        assert record is not None
        assert record.max_attempts == 3  # from the task's policy
        async with Manager(store, tasks, poll_interval=POLL) as manager:
            with no_hang():
                assert await store.result(job_id) == 3
        record = await store.get(job_id)
        assert record is not None
        assert record.attempts == 3
        assert (manager.metrics().failed, manager.metrics().retried) == (2, 2)


async def test_out_of_attempts_or_not_retryable_is_dead(store_factory: StoreFactory) -> None:
    tasks = TaskRegistry()

    @tasks.task("always", retry=aw.Retry(attempts=2))
    async def always() -> None:
        raise ValueError("always broken")

    @tasks.task("fatal", retry=aw.Retry(attempts=5, retry_on=(ConnectionError,)))
    async def fatal() -> None:
        raise KeyError("no such thing")

    @tasks.task("slow", timeout=0.05, retry=aw.Retry(attempts=2))
    async def slow() -> None:
        await asyncio.sleep(3600)

    @tasks.task("weird")
    async def weird() -> object:
        return object()

    async with opened(store_factory) as store:
        ids = {name: await tasks.enqueue(store, name) for name in tasks}
        async with Manager(store, tasks, poll_interval=POLL):
            for job_id in ids.values():
                with no_hang(), pytest.raises(aw.store.JobDead):
                    await store.result(job_id)
        errors = {}
        for name, job_id in ids.items():
            record = await store.get(job_id)
            assert record is not None
            errors[name] = (record.attempts, record.error or "")
        assert errors["always"][0] == 2
        assert "ValueError: always broken (attempt 2 of 2)" in errors["always"][1]
        assert errors["fatal"][0] == 1  # KeyError is not in retry_on
        assert errors["slow"][0] == 2
        assert "JobTimeout" in errors["slow"][1]
        assert errors["weird"][0] == 1  # a non-JSON result is not retried
        assert "not JSON" in errors["weird"][1]


async def test_hostile_rows_are_dead_lettered_never_run(store_factory: StoreFactory) -> None:
    tasks = TaskRegistry()
    ran: list[Any] = []

    @tasks.task("take")
    async def take(x: int = 0) -> None:
        ran.append(x)

    big = '{"x": "' + "y" * (aw.store.MAX_PAYLOAD_BYTES + 10) + '"}'
    async with opened(store_factory) as store:
        rows = {
            "unknown task": await store_factory.insert_raw(store, "no.such.task", "{}"),
            "not valid JSON": await store_factory.insert_raw(store, "take", "{not json"),
            "not a JSON object": await store_factory.insert_raw(store, "take", "[1, 2]"),
            "bytes, over": await store_factory.insert_raw(store, "take", big),
            "do not fit": await store_factory.insert_raw(store, "take", '{"nope": 1}'),
        }
        good = await tasks.enqueue(store, "take", {"x": 7})
        async with Manager(store, tasks, poll_interval=POLL) as manager:
            with no_hang():
                assert await store.result(good) is None
            await until("the dead letters", lambda: _count(store, "dead", len(rows)))
        for reason, job_id in rows.items():
            record = await store.get(job_id)
            assert record is not None
            assert record.state == "dead"
            assert record.error is not None
            assert record.error.startswith("rejected, never run")
            assert reason in record.error
        assert ran == [7]
        assert manager.metrics().rejected == len(rows)


async def _count(store: Store, state: str, n: int) -> bool:
    return (await store.counts())[state] == n  # type: ignore[index]


async def test_priority_order_through_the_manager(store_factory: StoreFactory) -> None:
    tasks = TaskRegistry()
    order: list[int] = []

    @tasks.task("note")
    async def note(i: int) -> None:
        order.append(i)

    async with opened(store_factory) as store:
        plan = [0, 3, 0, 9, 3]
        for i, p in enumerate(plan):
            await tasks.enqueue(store, "note", {"i": i}, priority=p)
        async with Manager(store, tasks, concurrency=1, poll_interval=POLL):
            await until("all five", lambda: _count(store, "succeeded", 5))
        assert order == [3, 1, 4, 0, 2]


async def test_worker_groups_and_pause(store_factory: StoreFactory) -> None:
    tasks = TaskRegistry()
    running: dict[str, int] = {"a": 0, "b": 0}
    peak: dict[str, int] = {"a": 0, "b": 0}
    gate = asyncio.Event()

    @tasks.task("work")
    async def work(q: str) -> None:
        running[q] += 1
        peak[q] = max(peak[q], running[q])
        await gate.wait()
        running[q] -= 1

    async with opened(store_factory) as store:
        for q in "ab" * 6:
            await tasks.enqueue(store, "work", {"q": q}, queue=q)
        await tasks.enqueue(store, "work", {"q": "c"}, queue="c")  # served by no group
        manager = Manager(store, tasks, concurrency={"a": 1, "b": 3}, poll_interval=POLL)
        async with manager:
            await until("the groups to fill", lambda: _true(running == {"a": 1, "b": 3}))
            manager.pause()
            gate.set()
            await until("the held jobs to finish", lambda: _true(manager.held() == 0))
            done = (await store.counts())["succeeded"]
            assert done == 4
            await anyio.sleep(0.2)  # paused: nothing claimed, whatever the wait
            assert (await store.counts())["succeeded"] == done
            manager.resume()
            await until("both queues", lambda: _count(store, "succeeded", 12))
        assert peak == {"a": 1, "b": 3}
        assert (await store.queue_counts())["c"]["queued"] == 1


async def _true(value: bool) -> bool:
    return value


async def test_stop_drains_then_releases_without_counting(store_factory: StoreFactory) -> None:
    tasks = TaskRegistry()
    started: dict[str, asyncio.Event] = {"quick": asyncio.Event(), "stuck": asyncio.Event()}
    finish_quick = asyncio.Event()
    cancelled: list[str] = []

    @tasks.task("job")
    async def job(name: str) -> str:
        started[name].set()
        try:
            if name == "quick":
                await finish_quick.wait()
            else:
                await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise
        return name

    async with opened(store_factory) as store:
        quick = await tasks.enqueue(store, "job", {"name": "quick"})
        stuck = await tasks.enqueue(store, "job", {"name": "stuck"})
        manager = Manager(store, tasks, concurrency=2, shutdown_grace=3600, poll_interval=POLL)
        async with manager:
            with no_hang():
                await started["quick"].wait()
                await started["stuck"].wait()
            manager.stop()
            late = await tasks.enqueue(store, "job", {"name": "quick"})
            finish_quick.set()
            await until("the drain", lambda: _state_is(store, quick, "succeeded"))
            manager.stop(grace=0)  # the second stop: no more waiting for "stuck"
        record = await store.get(stuck)
        assert record is not None
        assert (record.state, record.attempts) == ("queued", 0)
        assert await state_of(store, late) == "queued"  # never claimed after stop()
        assert cancelled == ["stuck"]
        assert manager.metrics().released == 1


async def _state_is(store: Store, job_id: int, state: str) -> bool:
    return await state_of(store, job_id) == state


async def test_grace_runs_out(store_factory: StoreFactory) -> None:
    tasks = TaskRegistry()
    started = asyncio.Event()

    @tasks.task("forever")
    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    async with opened(store_factory) as store:
        job_id = await tasks.enqueue(store, "forever")
        async with Manager(store, tasks, shutdown_grace=0.05, poll_interval=POLL):
            with no_hang():
                await started.wait()
        record = await store.get(job_id)
        assert record is not None
        assert (record.state, record.attempts) == ("queued", 0)


async def test_lost_lease_cancels_the_attempt(store_factory: StoreFactory) -> None:
    """A lease that lapsed (the heartbeat could not reach the database) and went to another
    worker: the heartbeat finds the claim gone, the job is cancelled, nothing is written."""
    tasks = TaskRegistry()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @tasks.task("long")
    async def long() -> str:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    async with opened(store_factory) as store:
        job_id = await tasks.enqueue(store, "long")
        manager = Manager(store, tasks, lease=0.3, poll_interval=POLL)
        async with manager:
            with no_hang():
                await started.wait()
            manager.pause()  # so that it does not take the job back
            async with opened(store_factory) as other:
                claimed = await steal_claim(store_factory, other)
                with no_hang():
                    await cancelled.wait()
                assert manager.metrics().lease_losses == 1
                assert await other.complete(job_id, claimed.token, '"stolen"')
        assert await store.result(job_id) == "stolen"
        record = await store.get(job_id)
        assert record is not None
        assert record.attempts == 2


async def test_a_hundred_thousand_jobs_hold_no_more_than_the_concurrency(
    store_factory: StoreFactory,
) -> None:
    """Claims are bounded by free capacity: however deep the queue, the Manager holds at
    most `concurrency` jobs (and its Runtime queues no more than that)."""
    tasks = TaskRegistry()
    seen: list[tuple[int, int]] = []
    manager: Manager | None = None
    runtime = aw.Runtime(workers=50)

    @tasks.task("tick")
    async def tick(i: int) -> None:
        assert manager is not None
        m = runtime.metrics()
        seen.append((manager.held(), m.pending + m.running))

    async with opened(store_factory) as store:
        await store.enqueue_many(tasks.job("tick", {"i": i}) for i in range(100_000))
        async with runtime:
            manager = Manager(store, tasks, concurrency=8, runtime=runtime, poll_interval=POLL)
            async with manager:
                await until("some done", lambda: _at_least(store, "succeeded", 500))
        counts = await store.counts()
        assert counts["succeeded"] + counts["queued"] == 100_000
        assert counts["running"] == 0  # stopping released or finished everything
        m = manager.metrics()
        assert (m.lease_losses, m.released) == (0, 0)  # a clean drain: no write refused
        assert m.succeeded == counts["succeeded"] == m.claimed
    assert len(seen) >= 500
    assert max(held for held, _ in seen) <= 8
    assert max(in_runtime for _, in_runtime in seen) <= 8
    assert max(held for held, _ in seen) == 8  # and it did use its capacity


async def _at_least(store: Store, state: str, n: int) -> bool:
    return (await store.counts())[state] >= n  # type: ignore[index]


class FlakyStore:
    """A store whose first claims fail, as when the database restarts."""

    def __init__(self, inner: Store, failures: int) -> None:
        self._inner = inner
        self.failures = failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def claim(self, *args: Any) -> list[aw.store.Claimed]:
        if self.failures:
            self.failures -= 1
            raise ConnectionResetError("the database went away")
        return await self._inner.claim(*args)


async def test_claim_errors_are_waited_out(store_factory: StoreFactory) -> None:
    tasks = TaskRegistry()

    @tasks.task("one")
    async def one() -> int:
        return 1

    async with opened(store_factory) as inner:
        job_id = await tasks.enqueue(inner, "one")
        store = FlakyStore(inner, failures=2)
        async with Manager(store, tasks, poll_interval=0.01):
            with no_hang():
                assert await inner.result(job_id) == 1
        assert store.failures == 0


def test_bad_manager_options() -> None:
    tasks = TaskRegistry()
    store = aw.store.SQLiteStore("unused.db")
    bad: list[tuple[dict[str, Any], type[Exception]]] = [
        ({"concurrency": 0}, ValueError),
        ({"concurrency": "3"}, TypeError),
        ({"concurrency": {}}, ValueError),
        ({"concurrency": {"a": 0}}, ValueError),
        ({"concurrency": {"a": 1}, "queues": ["a"]}, ValueError),
        ({"queues": "abc"}, TypeError),
        ({"lease": 0}, ValueError),
        ({"poll_interval": -1}, ValueError),
        ({"shutdown_grace": "x"}, TypeError),
        ({"runtime": object()}, TypeError),
    ]
    for kwargs, error in bad:
        with pytest.raises(error):
            Manager(store, tasks, **kwargs)
    with pytest.raises(TypeError, match="TaskRegistry"):
        Manager(store, {})  # type: ignore[arg-type]


async def test_thread_and_process_tasks(store_factory: StoreFactory) -> None:
    from _store_tasks import tasks

    async with opened(store_factory) as store:
        squares = [await tasks.enqueue(store, "square", {"n": n}) for n in range(4)]
        slow = await tasks.enqueue(store, "slow_thread", {"seconds": 0.01})
        async with Manager(store, tasks, concurrency=4, poll_interval=POLL):
            with no_hang():
                assert [await store.result(i) for i in squares] == [0, 1, 4, 9]
                assert await store.result(slow) == 0.01


async def test_the_heartbeat_thread_renews_leases_while_the_loop_is_blocked(
    store_factory: StoreFactory,
) -> None:
    """A job blocks the event loop (a bug in user code); a watcher thread sees the lease
    renewed during the block, which only the heartbeat thread can have done."""
    tasks = TaskRegistry()
    block: dict[str, float] = {}

    @tasks.task("blocker")
    async def blocker() -> str:
        block["from"] = time.time()
        time.sleep(1.5)  # noqa: ASYNC251 - blocking the loop is the point
        block["to"] = time.time()
        return "done"

    seen: list[tuple[float, float]] = []  # (when, lease_until)
    stop = threading.Event()

    def watch(job_id: int) -> None:
        while not stop.is_set():
            record = query(store_factory, lambda store: store.get(job_id))
            if record is not None and record.lease_until is not None:
                seen.append((time.time(), record.lease_until))
            time.sleep(0.02)

    async with opened(store_factory) as store:
        job_id = await tasks.enqueue(store, "blocker")
        watcher = threading.Thread(target=watch, args=(job_id,))
        watcher.start()
        try:
            async with Manager(store, tasks, lease=0.3, poll_interval=POLL):
                with no_hang():
                    assert await store.result(job_id) == "done"
        finally:
            stop.set()
            watcher.join()
    during = {lease for when, lease in seen if block["from"] < when < block["to"]}
    assert len(during) >= 2, (block, seen)  # renewed while the loop could not run


async def test_queues_limit_what_is_claimed(store_factory: StoreFactory) -> None:
    tasks = TaskRegistry()

    @tasks.task("q")
    async def q() -> str:
        return "ran"

    async with opened(store_factory) as store:
        mine = [await tasks.enqueue(store, "q", queue=name) for name in ("a", "b")]
        other = await tasks.enqueue(store, "q", queue="c")
        async with Manager(store, tasks, queues=["a", "b"], poll_interval=POLL) as manager:
            with no_hang():
                assert [await store.result(i) for i in mine] == ["ran", "ran"]
            with pytest.raises(ValueError, match="no worker group serves queue 'c'"):
                manager.pause("c")
        assert await state_of(store, other) == "queued"


async def test_sys_exit_in_a_task_fails_its_job_not_the_worker(
    store_factory: StoreFactory,
) -> None:
    tasks = TaskRegistry()
    runs: list[str] = []

    @tasks.task("exits", retry=aw.Retry(attempts=2))
    async def exits() -> None:
        runs.append("exits")
        raise SystemExit(3)

    @tasks.task("interrupts", retry=aw.Retry(attempts=1))
    def interrupts() -> None:
        raise KeyboardInterrupt

    @tasks.task("fine")
    async def fine() -> str:
        return "still working"

    async with opened(store_factory) as store:
        bad = [await tasks.enqueue(store, name) for name in ("exits", "interrupts")]
        async with Manager(store, tasks, poll_interval=POLL):
            for job_id in bad:
                with no_hang(), pytest.raises(aw.store.JobDead, match="TaskExited"):
                    await store.result(job_id)
            good = await tasks.enqueue(store, "fine")
            with no_hang():
                assert await store.result(good) == "still working"
        assert runs == ["exits", "exits"]  # retried like any failure
        record = await store.get(bad[0])
        assert record is not None
        assert "raised SystemExit(3)" in (record.error or "")


async def test_run_until_stopped(store_factory: StoreFactory) -> None:
    tasks = TaskRegistry()

    @tasks.task("one")
    async def one() -> int:
        return 1

    async with opened(store_factory) as store:
        job_id = await tasks.enqueue(store, "one")
        manager = Manager(store, tasks, poll_interval=POLL)
        with pytest.raises(RuntimeError, match="not running"):
            await manager.wait_stopping()
        with no_hang():
            async with anyio.create_task_group() as tg:
                tg.start_soon(manager.run)
                assert await store.result(job_id) == 1
                manager.stop()
        with pytest.raises(RuntimeError, match="only once"):
            await manager.__aenter__()
        assert "stopping" in repr(manager)
