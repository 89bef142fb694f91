"""The wall clock jumping under a running worker, on every store (issue 17.7).

Leases and ``run_at`` are unix times (``time.time()``): SQLite's on this machine's clock,
PostgreSQL's on the server's. A forward jump of this process's clock made every lease look
expired to the SQLite sweeper, which took running jobs back and ran them twice; now the
sweeper sees the jump against the monotonic clock and lets a lease's worth of heartbeats
renew the leases first. The jump is made by patching ``time.time`` of this process (what a
jump looks like to it), never the machine's clock.
"""

from __future__ import annotations

import asyncio
import ctypes
import time
from typing import Any

import anyio
import pytest

from _helpers import no_hang
from _store_support import StoreFactory, opened
from asyncworkers.store import Manager, Store, TaskRegistry

LEASE = 1.0
POLL = 0.05


class SweepWatch:
    """A store that counts the sweeper's ``requeue_expired`` calls."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.sweeps = 0
        self.swept = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def requeue_expired(self) -> int:
        count = int(await self._inner.requeue_expired())
        self.sweeps += 1
        self.swept.set()
        return count

    async def next_sweep(self) -> None:
        self.swept = asyncio.Event()
        with no_hang():
            await self.swept.wait()


@pytest.mark.parametrize("jump", [3600.0, -3600.0], ids=["forward", "back"])
async def test_a_wall_clock_jump_does_not_take_running_jobs_back(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch, jump: float
) -> None:
    offset = 0.0
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + offset)
    tasks = TaskRegistry()
    runs: list[int] = []
    started, release = asyncio.Event(), asyncio.Event()

    @tasks.task("long")
    async def long() -> str:
        runs.append(1)
        started.set()
        await release.wait()
        return "done"

    async with opened(store_factory) as inner:
        job_id = await tasks.enqueue(inner, "long")
        store = SweepWatch(inner)
        async with Manager(store, tasks, lease=LEASE, poll_interval=POLL) as manager:
            with no_hang():
                await started.wait()
            await store.next_sweep()
            offset = jump  # right after a sweep: the next look sees the jump first
            for _ in range(3):  # sweeps go on after the jump (after a lease, if forward)
                await store.next_sweep()
            release.set()
            with no_hang():
                assert await inner.result(job_id) == "done"
            while manager.held():
                await anyio.sleep(0.01)
        record = await inner.get(job_id)
        assert record is not None
        assert (record.state, record.attempts) == ("succeeded", 1)
        assert runs == [1]
        assert manager.metrics().lease_losses == 0


async def test_a_job_that_holds_the_gil_past_the_lease_is_not_silent(
    store_factory: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The heartbeat thread cannot run while a C call holds the GIL (here libc's usleep
    through ctypes.PyDLL, which keeps it): the leases may lapse and another worker may run
    the job again. The worker must say so, naming the cause and what to do."""
    tasks = TaskRegistry()
    managers: list[Manager] = []

    @tasks.task("hog")
    async def hog() -> str:
        # the heartbeat thread must be past its warm-up (which may wait for a connection on
        # a busy machine) and timing its rounds before the hold, or it never sees the hold
        keeper = managers[0]._keeper
        assert keeper is not None
        while keeper.rounds < 1:
            await anyio.sleep(0.01)
        ctypes.PyDLL(None).usleep(int(3 * LEASE * 1_000_000))  # keeps the GIL
        return "done"

    async with (
        opened(store_factory) as store,
        Manager(store, tasks, lease=LEASE, poll_interval=POLL) as manager,
    ):
        managers.append(manager)
        job_id = await tasks.enqueue(store, "hog")
        with no_hang():
            assert await store.result(job_id) == "done"
    stalls = [r.getMessage() for r in caplog.records if "could not run for" in r.getMessage()]
    assert stalls, "the stalled heartbeat went unreported"
    assert "held the GIL" in stalls[0]
    assert "kind='process'" in stalls[0]
