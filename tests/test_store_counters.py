"""The Manager's counters describe what the store recorded (issue 17.1), on every store.

A write the store refused (a fenced late write, an outage longer than the lease) is counted
once, as a lease loss, and nowhere else; after any of these faults ``Manager.metrics()`` and
``store.counts()`` agree.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import pytest

import asyncworkers as aw
from _helpers import no_hang, wait_in_thread
from _store_support import StoreFactory, opened, steal_claim
from asyncworkers.store import Manager, Store, TaskRegistry
from asyncworkers.store import _manager as manager_module

POLL = 0.05


def _assert_agree(m: aw.store.ManagerMetrics, counts: Mapping[Any, int]) -> None:
    """What the Manager says it wrote is what the store holds (one Manager, fresh store)."""
    assert m.succeeded == counts["succeeded"]
    assert m.dead == counts["dead"]


@pytest.mark.parametrize("outcome", ["succeed", "fail", "die"])
async def test_a_fenced_late_write_counts_only_as_a_lease_loss(
    store_factory: StoreFactory, outcome: str
) -> None:
    """The job's claim went to another worker while it ran (its lease lapsed); the outcome
    it writes afterwards is fenced out. Before the fix `succeeded` (or `failed`) counted it."""
    tasks = TaskRegistry()
    manager: Manager | None = None

    async with opened(store_factory) as store, opened(store_factory) as other:

        @tasks.task("late")
        async def late() -> Any:
            assert manager is not None
            manager.pause()  # so that only the thief can take the job back
            await steal_claim(store_factory, other)  # another worker took it over meanwhile
            if outcome == "fail":
                raise ValueError("too late anyway")  # a retryable failure
            return "late" if outcome == "succeed" else object()  # not JSON: dead at once

        await tasks.enqueue(store, "late", max_attempts=3)
        # A long lease: the heartbeat does not look before the late write does.
        manager = Manager(store, tasks, lease=60, poll_interval=POLL)
        async with manager:
            with no_hang():
                while manager.metrics().lease_losses == 0:
                    await anyio.sleep(0.01)
        m = manager.metrics()
        counts = await store.counts()
        assert counts["running"] == 1  # the thief's claim
        assert (m.claimed, m.succeeded, m.failed, m.retried, m.dead) == (1, 0, 0, 0, 0)
        assert m.lease_losses == 1
        _assert_agree(m, counts)


class _DownStore:
    """A store whose outcome writes fail while ``down`` is set (the database is away)."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.down = True
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _outage(self) -> None:
        if self.down:
            self.refused += 1
            raise ConnectionResetError("the database went away")

    async def complete(self, *args: Any) -> bool:
        self._outage()
        return bool(await self._inner.complete(*args))

    async def fail(self, *args: Any) -> bool:
        self._outage()
        return bool(await self._inner.fail(*args))


@pytest.mark.parametrize("outcome", ["succeed", "die"])
async def test_an_outage_longer_than_the_lease_counts_only_as_a_lease_loss(
    store_factory: StoreFactory, outcome: str
) -> None:
    tasks = TaskRegistry()
    manager: Manager | None = None

    @tasks.task("job")
    async def job() -> Any:
        assert manager is not None
        manager.pause()  # one attempt only: the one whose write cannot get through
        return "yes" if outcome == "succeed" else object()  # not JSON: dead at once

    async with opened(store_factory) as inner:
        job_id = await tasks.enqueue(inner, "job", max_attempts=3)
        store = _DownStore(inner)
        manager = Manager(store, tasks, lease=0.3, poll_interval=POLL)
        async with manager:
            with no_hang():
                while manager.metrics().lease_losses == 0:
                    await anyio.sleep(0.01)
        assert store.refused >= 2  # it did try again before it gave up
        m = manager.metrics()
        assert (m.succeeded, m.failed, m.dead, m.lease_losses) == (0, 0, 0, 1)
        record = await inner.get(job_id)
        assert record is not None
        assert record.state in ("running", "queued")  # nothing recorded: it runs again
        _assert_agree(m, await inner.counts())


class _RacedStore:
    """A store whose heartbeat beats, with its old list of claims, right after a completion
    was written and before the Manager hears back (what a beat thread may always do)."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.beats = 0
        self._beat_done = threading.Condition()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def sync_heartbeat(self) -> aw.store.SyncHeartbeat:
        real = self._inner.sync_heartbeat()
        raced = self

        class Beat:
            def beat(self, held: Sequence[tuple[int, int]], lease: float) -> set[int]:
                lost = real.beat(held, lease)
                with raced._beat_done:
                    raced.beats += 1
                    raced._beat_done.notify_all()
                return lost

            def close(self) -> None:
                real.close()

        return Beat()

    def _beats_after(self, seen: int, n: int) -> None:
        with self._beat_done:
            assert self._beat_done.wait_for(lambda: self.beats >= seen + n, timeout=30)

    async def complete(self, *args: Any) -> bool:
        seen = self.beats
        ok = bool(await self._inner.complete(*args))
        # Two beats: the first read the claim after it ended; the second starts only after
        # the first has handed its verdict to the loop, which runs it before we resume.
        await anyio.to_thread.run_sync(self._beats_after, seen, 2)
        return ok


async def test_a_heartbeat_racing_the_write_is_not_a_lease_loss(
    store_factory: StoreFactory,
) -> None:
    tasks = TaskRegistry()

    @tasks.task("quick")
    async def quick() -> int:
        return 1

    async with opened(store_factory) as inner:
        job_id = await tasks.enqueue(inner, "quick")
        store = _RacedStore(inner)
        async with Manager(store, tasks, lease=0.6, poll_interval=POLL) as manager:
            with no_hang():
                assert await inner.result(job_id) == 1
                while manager.held():
                    await anyio.sleep(0.01)
        m = manager.metrics()
        assert (m.succeeded, m.lease_losses) == (1, 0)
        _assert_agree(m, await inner.counts())


async def test_a_lost_claim_that_ignores_cancellation_counts_once(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heartbeat finds the claim gone and cancels the job, a thread that never checks;
    at shutdown the Manager must not try to release (and count again) a claim it lost."""
    monkeypatch.setattr(manager_module, "_CANCEL_WAIT", 0.05)
    tasks = TaskRegistry()
    started = threading.Event()
    release = threading.Event()

    @tasks.task("stubborn", kind="thread")
    def stubborn() -> str:
        started.set()
        release.wait(30)
        return "late"

    async def let_go_once_forgotten(manager: Manager) -> None:
        with no_hang():
            while manager.held():
                await anyio.sleep(0.01)
        release.set()

    async with opened(store_factory) as store, opened(store_factory) as other:
        await tasks.enqueue(store, "stubborn")
        try:
            manager = Manager(store, tasks, lease=0.3, poll_interval=POLL)
            async with anyio.create_task_group() as tg, manager:
                await wait_in_thread(started)
                manager.pause()
                await steal_claim(store_factory, other)
                with no_hang():
                    while manager.metrics().lease_losses == 0:
                        await anyio.sleep(0.01)
                tg.start_soon(let_go_once_forgotten, manager)
                manager.stop(grace=0)
        finally:
            release.set()
        m = manager.metrics()
        assert (m.lease_losses, m.released, m.succeeded) == (1, 0, 0)
        assert (await store.counts())["running"] == 1  # the thief's


async def test_counters_match_the_store_after_a_mixed_run(store_factory: StoreFactory) -> None:
    """No fault: every outcome counted is one the store holds."""
    tasks = TaskRegistry()

    @tasks.task("maybe", retry=aw.Retry(attempts=2, backoff=0.0))
    async def maybe(i: int) -> int:
        if i % 3 == 0:
            raise ValueError(i)
        await asyncio.sleep(0)
        return i

    async with opened(store_factory) as store:
        for i in range(12):
            await tasks.enqueue(store, "maybe", {"i": i}, max_attempts=2)
        async with Manager(store, tasks, concurrency=3, poll_interval=POLL) as manager:
            with no_hang():
                while (await store.counts())["queued"] + (await store.counts())["running"]:
                    await anyio.sleep(0.01)
                while manager.held():
                    await anyio.sleep(0.01)
        m = manager.metrics()
        counts = await store.counts()
        assert counts == {"queued": 0, "running": 0, "succeeded": 8, "dead": 4, "cancelled": 0}
        assert (m.succeeded, m.dead, m.failed, m.retried, m.lease_losses) == (8, 4, 8, 4, 0)
        assert m.claimed == m.succeeded + m.failed
        _assert_agree(m, counts)
