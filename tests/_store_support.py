"""Store factories for the store-agnostic tests, and helpers to watch a store from a test.

Every behaviour test takes the ``store_factory`` fixture (tests/conftest.py), which runs it
once per entry of :data:`STORE_FACTORIES`. To run the same tests on another store, add one
entry: a function of the test's ``tmp_path`` that returns a context manager yielding a
:class:`StoreFactory` for a fresh, empty store (and cleans it up after), e.g.::

    from _store_pg import postgres_factory
    STORE_FACTORIES["postgresql"] = postgres_factory
"""

from __future__ import annotations

import bisect
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import anyio

import asyncworkers as aw
from _helpers import no_hang

# A generous bound on waits for real worker processes: turns a hang into a failure, never
# an assertion about speed.
PROCESS_GUARD = 90.0
REPO = Path(__file__).resolve().parent.parent
TASKS = "tests._store_tasks:tasks"


class StoreFactory(Protocol):
    """One fresh, empty store for one test."""

    name: str
    url: str  # what `--store` takes, for worker processes

    def make(self) -> aw.store.Store:
        """A new store object on that database (not opened)."""
        ...

    async def insert_raw(self, store: aw.store.Store, task: str, args_text: str) -> int:
        """Insert a row behind the store's checks (a hostile row); its id."""
        ...

    async def expire_leases(self, store: aw.store.Store) -> None:
        """Make every running job's lease end now, as if no heartbeat had got through."""
        ...


class SQLiteFactory:
    """A SQLite file in the test's temporary folder."""

    name = "sqlite"

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "jobs.db"
        self.url = f"sqlite:///{self.path}"

    def make(self) -> aw.store.Store:
        return aw.store.SQLiteStore(self.path)

    async def insert_raw(self, store: aw.store.Store, task: str, args_text: str) -> int:
        def insert() -> int:
            with sqlite3.connect(self.path, timeout=30) as conn:
                now = time.time()
                cursor = conn.execute(
                    "INSERT INTO aw_jobs (task, args, enqueued_at, run_at) VALUES (?, ?, ?, ?)",
                    (task, args_text, now, now),
                )
                assert cursor.lastrowid is not None
                return cursor.lastrowid

        return await anyio.to_thread.run_sync(insert)

    async def expire_leases(self, store: aw.store.Store) -> None:
        def expire() -> None:
            with sqlite3.connect(self.path, timeout=30) as conn:
                conn.execute(
                    "UPDATE aw_jobs SET lease_until = ? WHERE state = 'running'",
                    (time.time() - 1,),
                )

        await anyio.to_thread.run_sync(expire)


@contextmanager
def sqlite_factory(tmp_path: Path) -> Iterator[StoreFactory]:
    yield SQLiteFactory(tmp_path)


STORE_FACTORIES: dict[str, Callable[[Path], AbstractContextManager[StoreFactory]]] = {
    "sqlite": sqlite_factory,
}

# PostgreSQL, for real (127.0.0.1:5432; .ci/run starts it): imported here, after the table it
# joins, because tests/_store_pg.py builds on this module.
from _store_pg import postgres_factory  # noqa: E402

STORE_FACTORIES["postgresql"] = postgres_factory


@asynccontextmanager
async def opened(factory: StoreFactory) -> AsyncIterator[aw.store.Store]:
    """A store of the factory's, opened for the block."""
    store = factory.make()
    await store.open()
    try:
        yield store
    finally:
        await store.close()


# -- watching a store from a sync test -----------------------------------------------------


def query(factory: StoreFactory, fn: Callable[[aw.store.Store], Any]) -> Any:
    """Run ``await fn(store)`` on a store of its own, from sync code."""

    async def main() -> Any:
        store = factory.make()
        await store.open()
        try:
            return await fn(store)
        finally:
            await store.close()

    return anyio.run(main)


def wait_until(what: str, check: Callable[[], Any], guard: float = PROCESS_GUARD) -> Any:
    """Poll *check* until it returns something truthy; fail after *guard* seconds."""
    deadline = time.monotonic() + guard
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {guard} s")
        time.sleep(0.05)


def inversions_at_most(ranked_starts: list[float], bound: int) -> int:
    """The largest number of jobs ranked after some job that were claimed strictly before
    it; fails when that exceeds *bound*."""
    later: list[float] = []  # claim times of the jobs ranked after the current one, sorted
    worst = 0
    for started in reversed(ranked_starts):
        worst = max(worst, bisect.bisect_left(later, started))
        bisect.insort(later, started)
    assert worst <= bound, f"a job was overtaken by {worst} lower-ranked jobs (bound {bound})"
    return worst


def lines(path: Path) -> list[str]:
    """The lines of a marker file (none when it does not exist yet)."""
    return path.read_text().splitlines() if path.exists() else []


# -- worker processes ----------------------------------------------------------------------


class Worker:
    """``python -m asyncworkers worker`` in a subprocess, its output in a file."""

    def __init__(
        self,
        url: str,
        log: Path,
        *options: str,
        tasks: str = TASKS,
        launcher: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        """*launcher* goes before the command (``ip netns exec NS`` runs it in a host of
        tests/_hosts.py: ``ip`` execs it, so ``proc.pid`` is still the worker's); *env* is
        added to the environment."""
        self.log = log
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [*launcher, sys.executable, "-m", "asyncworkers", "worker", "--store", url,
                 "--tasks", tasks, *options],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env,
            )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text()

    def wait_ready(self) -> None:
        """Wait for the line the worker prints once it runs (and handles SIGTERM)."""

        def ready() -> bool:
            if "task(s), concurrency" in self.output():
                return True
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited before it started:\n{self.output()}")
            return False

        wait_until("the worker to start", ready)

    def signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def wait(self, guard: float = PROCESS_GUARD) -> int:
        try:
            return self.proc.wait(timeout=guard)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"worker did not exit:\n{self.output()}") from None

    def stop(self) -> None:
        """Kill it if it still runs (cleanup after a failed test)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def workers(url: str, tmp_path: Path, count: int, *options: str) -> Iterator[list[Worker]]:
    """*count* worker processes; killed on the way out if still running."""
    started = [Worker(url, tmp_path / f"worker{i}.log", *options) for i in range(count)]
    try:
        for worker in started:
            worker.wait_ready()
        yield started
    finally:
        for worker in started:
            worker.stop()


async def steal_claim(factory: StoreFactory, store: aw.store.Store) -> aw.store.Claimed:
    """Lapse the leases, put the jobs back and claim one as another worker ("thief")."""
    with no_hang():
        while True:
            await factory.expire_leases(store)
            await store.requeue_expired()
            claimed = await store.claim(None, 1, 30, "thief")
            if claimed:
                return claimed[0]
            await anyio.sleep(0.01)
