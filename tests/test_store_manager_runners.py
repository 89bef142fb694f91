"""The Manager runs held jobs on runner tasks, started as held jobs outnumber idle runners
(issue 14 item 6): no task per job, and never more runners than jobs held at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import anyio

from asyncworkers.store import Manager, SQLiteStore, TaskRegistry

GUARD = 60.0  # a hang becomes a failure; never an assertion about speed


def _runners() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "asyncworkers-manager-runner"]


async def test_runners_follow_the_jobs_held_not_the_cap(tmp_path: Path) -> None:
    tasks = TaskRegistry()
    gate = anyio.Event()
    started: list[int] = []

    @tasks.task("held")
    async def held(i: int) -> int:
        started.append(i)
        await gate.wait()
        return i

    @tasks.task("quick")
    async def quick(i: int) -> int:
        return i

    async with SQLiteStore(tmp_path / "jobs.db") as store:
        await store.enqueue_many(tasks.job("held", {"i": i}) for i in range(3))
        with anyio.fail_after(GUARD):
            async with Manager(store, tasks, concurrency=10**6, poll_interval=0.05) as manager:
                while len(started) < 3:
                    await anyio.sleep(0.01)
                assert len(_runners()) == 3  # one per job held, not 10**6
                gate.set()
                manager.stop()
        assert _runners() == []
        await store.enqueue_many(tasks.job("quick", {"i": i}) for i in range(200))
        with anyio.fail_after(GUARD):
            async with Manager(store, tasks, concurrency=5, poll_interval=0.05) as manager:
                while (await store.counts())["succeeded"] < 203:
                    await anyio.sleep(0.01)
                # 200 jobs ran on at most 5 runners, reused from job to job
                assert 1 <= len(_runners()) <= 5
                manager.stop()
        assert _runners() == []
