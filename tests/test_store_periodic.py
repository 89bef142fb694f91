"""Periodic tasks on every store: each instant enqueued once by two workers, no burst after a
downtime (or the missed runs with catch_up), schedules, and the Manager running them.

The scheduler tests drive a fake wall clock and call ``tick()`` (one look, as a worker makes
at each instant); only the Manager test runs on the real clock, with a half-second interval
and waits for events, never for time.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from _helpers import no_hang
from _store_support import StoreFactory, opened
from asyncworkers.store import Manager, Store, TaskRegistry
from asyncworkers.store._periodic import PeriodicScheduler
from asyncworkers.store._schedule import MAX_CATCH_UP, Cron, Every, make_schedule

T0 = 1_800_000_000.0  # a multiple of 10: the instants of a 10 s schedule are T0 + 10 k


class Clock:
    """A wall clock the test sets."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def registry() -> TaskRegistry:
    tasks = TaskRegistry()

    @tasks.periodic(10, name="plain", args={"label": "p"})
    async def plain(label: str) -> str:
        return label

    @tasks.periodic(timedelta(seconds=10), name="catchup", catch_up=True)
    async def catchup() -> None:
        return None

    @tasks.periodic(10, name="two", catch_up=2)
    async def two() -> None:
        return None

    return tasks


async def run_at_of(store: Store, task: str) -> list[float]:
    return sorted(r.run_at for r in await store.jobs(task=task, limit=1000))


class RacingStore:
    """A store whose ``schedule_mark`` answers only once both workers have asked: both
    read the same mark before either writes, the race the compare-and-set must settle."""

    def __init__(self, store: Store, arrived: list[int], both: anyio.Event) -> None:
        self._store = store
        self._arrived = arrived
        self._both = both

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def schedule_mark(self, name: str) -> float | None:
        mark = await self._store.schedule_mark(name)
        self._arrived.append(1)
        if len(self._arrived) == 2:
            self._both.set()
        await self._both.wait()
        return mark


async def race(ticks: list[Callable[[], Awaitable[int]]]) -> list[int]:
    added = [0] * len(ticks)

    async def one(i: int) -> None:
        added[i] = await ticks[i]()

    async with anyio.create_task_group() as tg:
        for i in range(len(ticks)):
            tg.start_soon(one, i)
    return added


async def test_two_workers_enqueue_each_instant_once(store_factory: StoreFactory) -> None:
    tasks = TaskRegistry()

    @tasks.periodic(10, name="tick")
    async def tick() -> None:
        return None

    clock = Clock(T0 + 3)
    async with opened(store_factory) as a, opened(store_factory) as b:
        # the first look of a new schedule marks its latest instant and runs nothing
        assert await PeriodicScheduler(a, tasks, clock=clock).tick() == 0
        assert await a.schedule_mark("tick") == T0
        for k in range(1, 4):
            clock.now = T0 + 10 * k + 0.5
            arrived: list[int] = []
            both = anyio.Event()
            workers = [
                PeriodicScheduler(RacingStore(s, arrived, both), tasks, clock=clock) for s in (a, b)
            ]
            with no_hang():
                added = await race([w.tick for w in workers])
            assert sorted(added) == [0, 1], f"instant {k}: added {added}"
            # a later look at the same instant adds nothing either
            assert await PeriodicScheduler(b, tasks, clock=clock).tick() == 0
        records = await a.jobs(task="tick")
        assert sorted(r.run_at for r in records) == [T0 + 10, T0 + 20, T0 + 30]
        keys = {r.key for r in records}
        stamp = datetime.fromtimestamp(T0 + 20, UTC).isoformat()
        assert f"periodic:tick:{stamp}" in keys
        assert len(keys) == 3


async def test_downtime_gives_one_run_or_the_missed_ones(store_factory: StoreFactory) -> None:
    tasks = registry()
    clock = Clock(T0 + 1)
    async with opened(store_factory) as store:
        worker = PeriodicScheduler(store, tasks, clock=clock)
        assert await worker.tick() == 0  # marks
        clock.now = T0 + 10.5
        assert await worker.tick() == 3  # one run of each
        # down over three instants (T0 + 20, 30, 40), then a look
        clock.now = T0 + 45
        assert await worker.tick() == 1 + 3 + 2
        assert await run_at_of(store, "plain") == [T0 + 10, T0 + 40]
        assert await run_at_of(store, "catchup") == [T0 + 10, T0 + 20, T0 + 30, T0 + 40]
        assert await run_at_of(store, "two") == [T0 + 10, T0 + 30, T0 + 40]
        (job, *_) = await store.jobs(task="plain")
        assert job.args == {"label": "p"}
        # catch_up=True is bounded: a long downtime is not an unbounded burst
        clock.now = T0 + 40 + 10 * (MAX_CATCH_UP + 50)
        assert await worker.tick() == 1 + MAX_CATCH_UP + 2


async def test_a_worker_that_comes_back_adds_nothing_the_other_did(
    store_factory: StoreFactory,
) -> None:
    tasks = registry()
    clock = Clock(T0 + 1)
    async with opened(store_factory) as a, opened(store_factory) as b:
        up = PeriodicScheduler(a, tasks, clock=clock)
        back = PeriodicScheduler(b, tasks, clock=clock)
        await up.tick()
        for k in range(1, 5):  # b is down; a enqueues every instant
            clock.now = T0 + 10 * k + 1
            assert await up.tick() == 3
        assert await back.tick() == 0  # b comes back: nothing is missing
        assert await run_at_of(a, "catchup") == [T0 + 10 * k for k in range(1, 5)]


def test_schedules() -> None:
    five = Cron("*/5 * * * *")
    noon = datetime(2026, 12, 6, 12, 0, tzinfo=UTC).timestamp()
    assert five.latest(noon) == noon
    assert five.latest(noon - 0.5) == noon - 300
    assert five.next_after(noon) == noon + 300
    assert five.missed(noon - 900, noon + 1, limit=10) == [noon - 600, noon - 300, noon]
    assert five.missed(noon - 900, noon + 1, limit=2) == [noon - 300, noon]
    seconds = Cron("* * * * * */2")  # six fields: seconds last
    assert seconds.next_after(noon) == noon + 2
    every = Every(10)
    assert every.latest(T0 + 9.99) == T0
    assert every.next_after(T0) == T0 + 10
    assert make_schedule(timedelta(minutes=1)) == Every(60)
    # intervals that are no binary fraction: every missed instant once, in order
    for step in (0.1, 0.3, 7.7):
        missed = Every(step).missed(T0, T0 + 2000 * step, limit=1000)
        assert len(set(missed)) == len(missed) == 1000
        assert missed == sorted(missed)
        assert missed[-1] == Every(step).latest(T0 + 2000 * step)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"schedule": "every minute"}, ValueError, "not a cron expression"),
        ({"schedule": "61 * * * *"}, ValueError, "not a cron expression"),
        ({"schedule": 0}, ValueError, "seconds > 0"),
        ({"schedule": -5.0}, ValueError, "seconds > 0"),
        ({"schedule": 1e-6}, ValueError, "at least 0.001 s"),
        ({"schedule": [1]}, TypeError, "cron string, seconds or a timedelta"),
        ({"schedule": 10, "catch_up": 0}, ValueError, "between 1 and"),
        ({"schedule": 10, "catch_up": "yes"}, TypeError, "bool or a number of runs"),
        ({"catch_up": True}, ValueError, "need a schedule"),
        ({"schedule": 10, "schedule_args": {"nope": 1}}, TypeError, "do not fit"),
        ({"schedule": 10, "schedule_args": {"n": object()}}, TypeError, "not JSON"),
    ],
)
def test_bad_schedules_fail_at_registration(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    tasks = TaskRegistry()
    with pytest.raises(error, match=match):

        @tasks.task("t", **options)
        async def t(n: int = 0) -> None:
            return None


async def test_two_managers_run_each_instant_once(store_factory: StoreFactory) -> None:
    tasks = TaskRegistry()
    seen: list[float] = []
    three = anyio.Event()

    # catch_up: a look delayed past an instant (a loaded machine) still leaves no gap
    @tasks.periodic(0.5, name="beat", catch_up=True)
    async def beat() -> None:
        seen.append(1)
        if len(seen) >= 3:
            three.set()

    @tasks.task("other")
    async def other() -> None:
        return None

    async with opened(store_factory) as a, opened(store_factory) as b:
        async with (
            Manager(a, tasks, poll_interval=0.05, worker="a"),
            Manager(b, tasks, poll_interval=0.05, worker="b"),
        ):
            with no_hang():
                await three.wait()
        records = await a.jobs(task="beat", limit=1000)
    instants = sorted(r.run_at for r in records)
    assert len(instants) >= 3
    assert len(set(instants)) == len(instants)  # never one instant twice
    assert all(y - x == 0.5 for x, y in itertools.pairwise(instants))  # no gap
    assert {r.worker for r in records if r.state == "succeeded"} <= {"a", "b"}


async def test_a_manager_with_periodic_false_enqueues_nothing(
    store_factory: StoreFactory,
) -> None:
    tasks = registry()
    async with opened(store_factory) as store:
        async with Manager(store, tasks, poll_interval=0.05, periodic=False) as manager:
            manager.stop()
        assert await store.schedule_mark("plain") is None
