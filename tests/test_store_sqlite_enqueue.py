"""SQLiteStore's single enqueue, written on the loop's own thread (issue 14 item 6).

A lone small job is inserted by a connection of the loop's thread that never waits for a
lock and never checkpoints; whatever could block the loop goes to the store's thread.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from asyncworkers.store import StoreError, _sqlite
from asyncworkers.store._jobs import new_job
from asyncworkers.store._sqlite import SQLiteStore

GUARD = 60.0  # turns a hang into a failure; never an assertion about speed


async def test_a_locked_database_sends_the_enqueue_to_the_thread(tmp_path: Path) -> None:
    """Another process holds the write lock: the loop goes on running, the enqueue waits
    in the thread, and lands once the lock is free."""
    path = tmp_path / "jobs.db"
    async with SQLiteStore(path) as store:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        ids: list[int] = []
        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tg:

                async def enqueue() -> None:
                    ids.append(await store.enqueue("t", {"n": 1}))

                tg.start_soon(enqueue)
                while store._flushing is None:  # queued for the thread, the loop still free
                    await anyio.lowlevel.checkpoint()
                assert ids == []
                other.execute("COMMIT")
        other.close()
        record = await store.get(ids[0])
        assert record is not None
        assert (record.task, record.args) == ("t", {"n": 1})


async def test_the_log_is_checkpointed_though_the_loop_never_does(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    every = _sqlite._INLINE_CHECKPOINT_EVERY
    async with SQLiteStore(path) as store:
        for i in range(6 * every):
            await store.enqueue("t", {"i": i})
        with sqlite3.connect(path) as conn:
            # (busy, frames in the log, frames checkpointed): without the store's own
            # checkpoints the log would hold every commit, 4 frames or so each
            _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert frames < 8 * every, frames
        assert (await store.counts())["queued"] == 6 * every
        # and all but one in every+1 were written on the loop's thread
        assert 0 < store._inline_commits <= every


async def test_big_and_keyed_jobs_and_ids_in_order(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "jobs.db") as store:
        small = await store.enqueue("t", {"i": 1})
        big = await store.enqueue("t", {"blob": "x" * (_sqlite._INLINE_MAX_BYTES + 1)})
        keyed = await store.enqueue("t", {"i": 2}, key="k")
        assert await store.enqueue("t", {"i": 3}, key="k") == keyed
        (alone,) = await store.enqueue_many([new_job("t", {"i": 4})])
        assert small < big < keyed < alone
        record = await store.get(big)
        assert record is not None
        assert len(record.args["blob"]) == _sqlite._INLINE_MAX_BYTES + 1


async def test_a_cancelled_caller_enqueues_nothing(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "jobs.db") as store:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await store.enqueue("t")
        assert scope.cancelled_caught
        assert (await store.counts())["queued"] == 0


async def test_read_only_stores_have_no_loop_connection(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    async with SQLiteStore(path):
        pass
    async with SQLiteStore(path, read_only=True) as store:
        with pytest.raises(StoreError, match="read-only"):
            await store.enqueue("t")


async def test_a_loop_of_enqueues_lets_other_tasks_run(tmp_path: Path) -> None:
    """An inline enqueue does not yield each time, but every few: a producer loop never
    starves the loop's other tasks (heartbeats, health probes)."""
    ran = 0

    async def other() -> None:
        nonlocal ran
        while True:
            ran += 1
            await anyio.lowlevel.checkpoint()

    async with SQLiteStore(tmp_path / "jobs.db") as store, anyio.create_task_group() as tg:
        tg.start_soon(other)
        await anyio.lowlevel.checkpoint()  # let it start
        before = ran
        for i in range(2 * _sqlite._INLINE_YIELD_EVERY):
            await store.enqueue("t", {"i": i})
        assert ran >= before + 2
        tg.cancel_scope.cancel()
