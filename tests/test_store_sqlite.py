"""What is SQLite's own: locks waited out, group commit, files and URLs, the schema version."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import anyio
import pytest

import asyncworkers as aw
from _helpers import no_hang
from asyncworkers.store import SQLiteStore, StoreError, StoreUnavailable, open_store


def hold_write_lock(path: Path, until: threading.Event) -> threading.Thread:
    """Another process's long write transaction, in a thread: holds the lock until set."""
    locked = threading.Event()

    def run() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        until.wait(60)
        conn.execute("ROLLBACK")
        conn.close()

    thread = threading.Thread(target=run)
    thread.start()
    assert locked.wait(60)
    return thread


async def test_a_locked_database_is_waited_out(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    async with SQLiteStore(path, busy_timeout=0.01) as store:
        release = threading.Event()
        thread = hold_write_lock(path, release)
        try:
            with no_hang():
                async with anyio.create_task_group() as tg:
                    tg.start_soon(store.enqueue, "t")
                    await anyio.sleep(0.2)  # the enqueue meets the lock, many busy timeouts
                    release.set()
        finally:
            release.set()
            thread.join()
        assert (await store.counts())["queued"] == 1


async def test_locked_for_too_long_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    async with SQLiteStore(path, busy_timeout=0.01, locked_give_up=0.05) as store:
        release = threading.Event()
        thread = hold_write_lock(path, release)
        try:
            with pytest.raises(StoreError, match=r"stayed locked"):
                await store.enqueue("t")
        finally:
            release.set()
            thread.join()
        assert await store.enqueue("t") == 1  # and then it works again


async def test_one_failing_write_does_not_undo_its_batch(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "jobs.db") as store:

        def bad(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO aw_jobs (task) VALUES ('half')")  # NOT NULL fails

        results: dict[str, object] = {}

        async def good(i: int) -> None:
            results[f"good{i}"] = await store.enqueue("t", {"i": i})

        async def failing() -> None:
            try:
                await store._write(bad)
            except sqlite3.IntegrityError as exc:
                results["bad"] = exc

        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(good, i)
            tg.start_soon(failing)
            for i in range(5, 10):
                tg.start_soon(good, i)
        assert isinstance(results.pop("bad"), sqlite3.IntegrityError)
        assert sorted(results.values()) == list(range(1, 11))  # type: ignore[type-var]
        assert (await store.counts())["queued"] == 10


async def test_jobs_outlive_the_store_object(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    async with SQLiteStore(path) as store:
        job_id = await store.enqueue("t", {"kept": True})
        await store.open()  # idempotent
    async with SQLiteStore(path) as again:
        record = await again.get(job_id)
        assert record is not None
        assert record.args == {"kept": True}


async def test_unusable_files(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="does not exist"):
        await SQLiteStore(tmp_path / "missing" / "jobs.db").open()
    not_db = tmp_path / "notes.txt"
    not_db.write_text("hello, this is not a database file at all" * 100)
    with pytest.raises(StoreUnavailable, match=r"notes\.txt"):
        await SQLiteStore(not_db).open()
    with pytest.raises(StoreError, match="not open"):
        await SQLiteStore(tmp_path / "never-opened.db").enqueue("t")


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="upgrade asyncworkers"):
        await SQLiteStore(path).open()


def test_bad_arguments() -> None:
    for bad in (":memory:", ""):
        with pytest.raises(ValueError, match="needs a file"):
            SQLiteStore(bad)
    with pytest.raises(TypeError):
        SQLiteStore(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="busy_timeout"):
        SQLiteStore("x.db", busy_timeout=0)


def test_open_store_urls(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/a.db")
    assert isinstance(store, SQLiteStore)
    assert store.path == f"{tmp_path}/a.db"
    relative = open_store("sqlite:///rel/b.db")
    assert isinstance(relative, SQLiteStore)
    assert relative.path == "rel/b.db"
    assert isinstance(open_store(), SQLiteStore)  # sqlite:///asyncworkers.db
    for bad in ("mysql://h/db", "jobs.db", "sqlite://", "sqlite:///"):
        with pytest.raises(ValueError, match="sqlite:///"):
            open_store(bad)
    with pytest.raises(TypeError):
        open_store(None)  # type: ignore[arg-type]
    assert aw.store.DEFAULT_URL == "sqlite:///asyncworkers.db"
