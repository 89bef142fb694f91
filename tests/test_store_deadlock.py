"""A job that awaits another job of its own store, on every store (issue 17.7): where the
worker can never run the awaited job, ``result()`` raises JobWouldDeadlock at once (the job
ends dead, never retried) instead of hanging; where it can, the wait just works."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

import asyncworkers as aw
from _helpers import no_hang
from _store_support import StoreFactory, opened
from asyncworkers.store import Manager, Store, TaskRegistry

POLL = 0.05


def parent_and_child(queue: str = "default") -> tuple[TaskRegistry, list[Store]]:
    tasks = TaskRegistry()
    stores: list[Store] = []  # the store the jobs use, set by the test

    @tasks.task("child", queue=queue)
    async def child() -> int:
        return 7

    @tasks.task("parent")
    async def parent() -> int:
        (store,) = stores
        child_id = await tasks.enqueue(store, "child")
        value: int = await store.result(child_id)
        return value + 1

    return tasks, stores


async def test_awaiting_a_job_the_worker_cannot_run_raises_at_once(
    store_factory: StoreFactory,
) -> None:
    tasks, stores = parent_and_child()
    async with opened(store_factory) as store:
        stores.append(store)
        parent = await tasks.enqueue(store, "parent")
        async with Manager(store, tasks, concurrency=1, poll_interval=POLL) as manager:
            with no_hang(), pytest.raises(aw.store.JobDead, match="JobWouldDeadlock"):
                await store.result(parent)
            with no_hang():  # the slot is free again: the child runs
                assert await store.result(parent + 1) == 7
        record = await store.get(parent)
        assert record is not None
        assert record.attempts == 1  # not retried: waiting would never work better
        assert record.error is not None
        assert "can never run" in record.error
        assert manager.metrics().dead == 1


@pytest.mark.parametrize(
    ("concurrency", "queue"),
    [(2, "default"), ({"default": 1, "other": 1}, "other")],
    ids=["a-free-slot", "another-group"],
)
async def test_awaiting_a_job_the_worker_can_run_works(
    store_factory: StoreFactory, concurrency: int | Mapping[str, int], queue: str
) -> None:
    tasks, stores = parent_and_child(queue)
    async with opened(store_factory) as store:
        stores.append(store)
        parent = await tasks.enqueue(store, "parent")
        async with Manager(store, tasks, concurrency=concurrency, poll_interval=POLL):
            with no_hang():
                assert await store.result(parent) == 8
