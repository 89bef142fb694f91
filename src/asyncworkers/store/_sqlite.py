"""SQLiteStore: the embedded default store, one file, stdlib ``sqlite3`` in threads.

Why it holds up with several processes on one file:

- WAL journal: readers never block the writer, nor the writer readers.
- Every write is one ``BEGIN IMMEDIATE`` transaction, which takes the write lock at its
  start; a deferred transaction that upgrades a read to a write can fail with SQLITE_BUSY at
  once, busy handler or not, so none is ever used.
- SQLITE_BUSY ("database is locked") is waited out: the busy timeout first, then retries with
  backoff of the whole transaction, for up to ``locked_give_up`` seconds. Only past that does
  the caller get a :class:`StoreError`, naming the file.
- ``synchronous=NORMAL``: in WAL mode a commit survives the crash of the process (the jobs
  this store promises to keep); only a power loss may drop the last commits.
- Opening writes nothing when the schema is current, and ``read_only=True`` opens the file
  read-only, so that reading (``asyncworkers status``) works on a full disk and on a file
  nobody may write. A write that fails for want of room raises :class:`StoreFull`.
- The file deleted (or replaced) under an open store: every call raises a non-transient
  :class:`StoreUnavailable` rather than go on with a file nobody else sees; a Manager stops
  on it.

The blocking calls run through ``anyio.to_thread.run_sync`` one at a time per store (a
connection is used by one thread at a time); they are never abandoned on cancellation, so a
transaction is always finished or rolled back, never left half-done.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

from ._errors import StoreError, StoreFull, StoreUnavailable
from ._fields import (
    check_claim,
    check_claimed,
    check_held,
    check_id,
    check_json_text,
    check_lease,
    check_limit,
    check_queue_filter,
    check_timeout,
    clean_error,
    retry_time,
)
from ._jobs import EnqueueFields, decode_json, job_filters, purge_states, wait_result
from ._protocol import PURGE_BATCH, STATES, Claimed, JobRecord, NewJob, State
from ._sqlite_schema import MIGRATIONS

__all__ = ["SQLiteStore"]

T = TypeVar("T")

# How often wait_for_work looks for commits by other connections (PRAGMA data_version): a
# thread hop of ~0.1 ms each, so an idle worker spends ~0.5 % of a core on it.
_WATCH_INTERVAL = 0.02

# Free bytes under which a disk I/O error is taken for a full disk: a WAL frame is a page
# (4 KiB), the shared-memory index grows by 32 KiB.
_FULL_BELOW = 64 * 1024

# A single enqueue is written on the event loop's thread when it is this small and the
# write lock is free (see SQLiteStore._enqueue_inline); a bigger one goes to the thread.
_INLINE_MAX_BYTES = 16 * 1024
# Inline commits between two checkpoints (run in the thread, PASSIVE): a one-row commit
# adds 2-4 pages to the log, so this keeps it near SQLite's own 1000-page threshold.
_INLINE_CHECKPOINT_EVERY = 256
# Single enqueues between two yields to the loop (each takes tens of microseconds).
_INLINE_YIELD_EVERY = 8

# JobRecord's fields, in its order.
_COLUMNS = (
    "id, task, args, state, priority, queue, attempts, max_attempts, result, error, key, "
    "enqueued_at, run_at, started_at, finished_at, lease_until, worker"
)
_INSERT = (
    "INSERT INTO aw_jobs "
    "(task, args, priority, queue, max_attempts, key, enqueued_at, run_at, scheduled) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


# What one write of a batch came to: (True, its value) or (False, its exception).
_Outcome = tuple[bool, Any]


class _Pending:
    """One write waiting for (or in) a batch."""

    __slots__ = ("done", "failure", "fn", "value")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any]) -> None:
        self.fn = fn
        self.done = False
        self.value: Any = None
        self.failure: BaseException | None = None

    def settle(self, outcome: _Outcome) -> None:
        ok, value = outcome
        self.done = True
        if ok:
            self.value = value
        else:
            self.failure = value


class _Busy:
    """What :meth:`_Database.write_now` returns when the write lock is taken."""


BUSY = _Busy()


class _Database:
    """One sqlite3 connection, used by one thread at a time, with busy waits and retries.

    *inline*: the connection of the event loop's own thread (see ``SQLiteStore._inline``):
    it never checkpoints by itself, since a checkpoint waits for the disk.
    """

    def __init__(
        self,
        path: str,
        busy_timeout: float,
        locked_give_up: float,
        *,
        read_only: bool = False,
        inline: bool = False,
    ) -> None:
        self.path = path
        self.read_only = read_only
        self.inline = inline
        self._busy_timeout = busy_timeout
        self._give_up = locked_give_up
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file opened

    def connect(self) -> None:
        with self._lock:
            if self._conn is None:
                opener = self._open_read_only if self.read_only else self._open
                self._conn = self._retry_busy(opener)
                self._identity = self._file_identity()

    def _open(self) -> sqlite3.Connection:
        conn = self._connect(self.path, uri=False)
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":  # asked only when needed: the switch is a write
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous=NORMAL")
            if self.inline:
                conn.execute("PRAGMA wal_autocheckpoint=0")
        except sqlite3.DatabaseError as exc:
            conn.close()
            if _busy(exc):
                raise
            raise self._open_error(exc) from None
        if mode != "wal":
            conn.close()
            raise StoreUnavailable(f"SQLite database {self.path}: cannot use WAL (got {mode!r})")
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        """Open without writing. A WAL database needs its shared-memory index (the ``-shm``
        file), which a full disk or a read-only folder may not let SQLite create; then, if
        no write-ahead log holds commits the file lacks (nobody has it open), the file is
        read as it stands (``immutable``)."""
        if not os.path.isfile(self.path):
            raise self._unavailable("no such file")
        target = "file:" + urllib.parse.quote(os.path.abspath(self.path))
        conn = self._connect(target + "?mode=ro", uri=True)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            conn.close()
            if _busy(exc):
                raise
            wal = self.path + "-wal"
            if os.path.exists(wal) and os.path.getsize(wal) > 0:
                raise self._open_error(exc) from None
            conn = self._connect(target + "?mode=ro&immutable=1", uri=True)
        return conn

    def _connect(self, target: str, *, uri: bool) -> sqlite3.Connection:
        try:
            return sqlite3.connect(
                target,
                uri=uri,
                timeout=self._busy_timeout,
                isolation_level=None,  # autocommit: transactions are explicit
                check_same_thread=False,  # the lock above keeps it to one thread at a time
            )
        except sqlite3.OperationalError as exc:
            raise self._open_error(exc) from None

    def _open_error(self, exc: sqlite3.Error) -> StoreError:
        error = sqlite_error(self.path, exc)
        return error if isinstance(error, StoreFull) else self._unavailable(str(exc))

    def _unavailable(self, why: str) -> StoreUnavailable:
        where = Path(self.path)
        hint = "" if where.parent.is_dir() else f" (the folder {where.parent} does not exist)"
        with contextlib.suppress(OSError):
            if os.statvfs(where.parent).f_flag & os.ST_RDONLY:
                hint = " (the file system holding it is mounted read-only)"
        return StoreUnavailable(f"cannot open SQLite database {self.path}: {why}{hint}")

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _check_same_file(self) -> None:
        """Raise when the file we opened is no longer at our path (deleted, or replaced):
        our writes would go to a file nobody else sees."""
        if self._identity is None or self._file_identity() == self._identity:
            return
        raise StoreUnavailable(
            f"SQLite database {self.path} was deleted or replaced while open; "
            "refusing to go on with a file nobody else sees",
            transient=False,
        )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run *fn* in a ``BEGIN IMMEDIATE`` transaction; the whole of it again when busy."""
        with self._lock:
            conn = self._connection()
            return self._retry_busy(lambda: _transaction(conn, fn))

    def write_now(
        self, fn: Callable[[sqlite3.Connection], T], *, one_statement: bool = False
    ) -> T | _Busy:
        """Run *fn* in a ``BEGIN IMMEDIATE`` transaction, or return :data:`BUSY` at once
        when another connection holds the write lock (never waits, never retries).
        *one_statement*: *fn* runs a single write statement, its own transaction."""
        with self._lock:
            conn = self._connection()
            try:
                return fn(conn) if one_statement else _transaction(conn, fn)
            except sqlite3.OperationalError as exc:
                if _busy(exc):
                    return BUSY
                raise sqlite_error(self.path, exc) from exc

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the file, as far as no reader needs it (PASSIVE)."""
        with self._lock:
            self._retry_busy(lambda: self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)"))

    def write_batch(self, fns: list[Callable[[sqlite3.Connection], Any]]) -> list[_Outcome]:
        """Run each of *fns* in one transaction, each under a savepoint of its own, so that
        one that fails is undone alone; SQLITE_BUSY repeats the whole batch."""
        with self._lock:
            conn = self._connection()
            return self._retry_busy(lambda: _transaction(conn, lambda c: self._each(c, fns)))

    def _each(
        self, conn: sqlite3.Connection, fns: list[Callable[[sqlite3.Connection], Any]]
    ) -> list[_Outcome]:
        out: list[_Outcome] = []
        for fn in fns:
            conn.execute("SAVEPOINT one")
            try:
                value = fn(conn)
            except sqlite3.OperationalError as exc:
                if _busy(exc):
                    raise  # the whole batch goes again
                conn.execute("ROLLBACK TO one")
                out.append((False, sqlite_error(self.path, exc)))
            except Exception as exc:
                conn.execute("ROLLBACK TO one")
                out.append((False, exc))
            else:
                out.append((True, value))
            conn.execute("RELEASE one")
        return out

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run *fn* outside any transaction of ours (each statement sees a committed state)."""
        with self._lock:
            conn = self._connection()
            return self._retry_busy(lambda: fn(conn))

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"SQLite store {self.path} is not open: use `await store.open()`")
        self._check_same_file()
        return self._conn

    def _retry_busy(self, step: Callable[[], T]) -> T:
        deadline = time.monotonic() + self._give_up
        pause = 0.001
        while True:
            try:
                return step()
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise sqlite_error(self.path, exc) from exc
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"SQLite database {self.path} stayed locked for {self._give_up:g} s "
                        "(another process holds a write transaction open)"
                    ) from exc
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


def _busy(exc: sqlite3.Error) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def sqlite_error(path: str, exc: sqlite3.Error) -> StoreError:
    """The store's error for a failed SQLite call: :class:`StoreFull` when the disk is full,
    a non-transient :class:`StoreUnavailable` when the file cannot be written at all."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary result code
    if code == sqlite3.SQLITE_FULL or (code == sqlite3.SQLITE_IOERR and _no_room(path)):
        return StoreFull(
            f"SQLite database {path}: the disk is full ({exc}); reading still works "
            "(`asyncworkers status`)"
        )
    if code == sqlite3.SQLITE_READONLY:
        return StoreUnavailable(f"SQLite database {path} cannot be written: {exc}")
    return StoreError(f"SQLite database {path}: {exc}")


def _no_room(path: str) -> bool:
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < _FULL_BELOW


def _transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        out = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return out


class SQLiteStore(EnqueueFields):
    """The embedded job store: one SQLite file, shared safely by several processes.

    :param path: the database file (created with its schema when missing); not ``:memory:``,
        since the heartbeat thread needs a connection of its own to the same database
    :param busy_timeout: seconds SQLite itself waits for another writer before retrying
    :param locked_give_up: seconds of a database locked by another process before a call
        raises :class:`StoreError` instead of waiting on
    :param read_only: open the file read-only (it must exist, its schema current); every
        write raises :class:`StoreError`. Reads then work on a full disk and on a file or
        folder nobody may write
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "asyncworkers.db",
        *,
        busy_timeout: float = 5.0,
        locked_give_up: float = 300.0,
        read_only: bool = False,
    ) -> None:
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a str or a path, got {path!r}")
        text = os.fspath(path)
        if text in ("", ":memory:") or text.startswith("file::memory:"):
            raise ValueError(
                f"SQLiteStore needs a file, got {text!r}: the heartbeat thread opens the "
                "database a second time (use a file in a temporary folder)"
            )
        for name, value in (("busy_timeout", busy_timeout), ("locked_give_up", locked_give_up)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
        if not isinstance(read_only, bool):
            raise TypeError(f"read_only must be a bool, got {read_only!r}")
        self.path = text
        self.read_only = read_only
        self._busy_timeout = float(busy_timeout)
        self._give_up = float(locked_give_up)
        self._db = _Database(text, self._busy_timeout, self._give_up, read_only=read_only)
        # the loop thread's own connection, for single enqueues (None: read-only, or closed)
        self._inline: _Database | None = None
        self._inline_commits = 0  # since the last checkpoint
        self._inline_calls = 0  # single enqueues, for _INLINE_YIELD_EVERY
        self._limiter: anyio.CapacityLimiter | None = None
        self._queue: list[_Pending] = []  # writes waiting for the next batch
        self._flushing: anyio.Event | None = None  # set when the batch under way is done
        self._opened = False
        self._local_enqueues = 0  # wakes wait_for_work in this process at once

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r}{', read_only=True' if self.read_only else ''})"

    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- plumbing ------------------------------------------------------------------------

    async def _call(self, blocking: Callable[[], T]) -> T:
        if self._limiter is None:  # made here: a CapacityLimiter belongs to a running loop
            self._limiter = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(blocking, limiter=self._limiter)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run *fn* in a write transaction, together with the writes other tasks asked for
        meanwhile (group commit: one thread hop and one commit for all of them).

        The first writer to find no batch under way runs one with everything queued; the
        others wait for it, and go again if theirs was queued too late to be in it.
        """
        if self.read_only:
            raise StoreError(f"{self!r} was opened read-only: it cannot write")
        item = _Pending(fn)
        self._queue.append(item)
        try:
            while not item.done:
                if self._flushing is None:
                    await self._flush()
                else:
                    await self._flushing.wait()
        except BaseException:
            if not item.done and item in self._queue:  # not taken yet: never run it
                self._queue.remove(item)
            raise
        if item.failure is not None:
            raise item.failure
        return item.value  # type: ignore[no-any-return]

    async def _flush(self) -> None:
        self._flushing = flushed = anyio.Event()
        batch, self._queue = self._queue, []
        try:
            # Shielded: the batch carries other tasks' writes, whose outcomes must reach
            # them even if the task running it is cancelled (it sees that right after).
            with anyio.CancelScope(shield=True):
                checkpoint = self._inline_commits >= _INLINE_CHECKPOINT_EVERY
                if checkpoint:
                    self._inline_commits = 0
                outcomes = await self._call(lambda: self._write_batch(batch, checkpoint))
        except Exception as exc:  # the whole batch failed (not open, locked for too long)
            for item in batch:
                item.settle((False, exc))
        else:
            for item, outcome in zip(batch, outcomes, strict=True):
                item.settle(outcome)
        finally:
            self._flushing = None
            flushed.set()

    def _write_batch(self, batch: list[_Pending], checkpoint: bool) -> list[_Outcome]:
        """In the thread: the batch, then the checkpoint the inline enqueues put off."""
        outcomes = self._db.write_batch([i.fn for i in batch])
        if checkpoint:
            with contextlib.suppress(StoreError):  # the log waits for the next one
                self._db.checkpoint()
        return outcomes

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._call(lambda: self._db.read(fn))

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Open the file (creating it), switch to WAL and bring the schema up to date.
        Nothing is written when it is already so; ``read_only``: nothing ever is."""
        if self._opened:
            return
        await self._call(self._db.connect)
        try:
            version = await self._read(_schema_version)
            if self.read_only:
                _check_readable(self.path, version)
            elif version != len(MIGRATIONS):
                await self._write(_migrate)
            if not self.read_only:
                inline = _Database(self.path, 0.0, self._give_up, inline=True)
                await self._call(inline.connect)
                self._inline = inline
        except BaseException:
            await self._call(self._db.close)
            raise
        self._opened = True

    async def close(self) -> None:
        """Close the connections (idempotent)."""
        self._opened = False
        inline, self._inline = self._inline, None
        if inline is not None:
            await self._call(inline.close)
        await self._call(self._db.close)

    # -- enqueue -------------------------------------------------------------------------

    async def _enqueue_one(self, job: NewJob) -> int:
        (job_id,) = await self.enqueue_many([job])
        return job_id

    async def enqueue_many(self, jobs: Iterable[NewJob]) -> list[int]:
        """Add many jobs in one transaction; their ids in input order."""
        batch = list(jobs)
        for job in batch:
            if not isinstance(job, NewJob):
                raise TypeError(f"enqueue_many() takes NewJob items, got {job!r}")
        if not batch:
            return []
        if len(batch) == 1:
            # A cancelled caller enqueues nothing; a loop of enqueues lets others run
            # every few (a yield per enqueue cost a fifth of one).
            await anyio.lowlevel.checkpoint_if_cancelled()
            self._inline_calls += 1
            if self._inline_calls % _INLINE_YIELD_EVERY == 0:
                await anyio.lowlevel.cancel_shielded_checkpoint()
            job_id = self._enqueue_inline(batch[0])
            if job_id is not None:
                self._local_enqueues += 1
                return [job_id]
        ids = await self._write(lambda conn: _insert(conn, batch, time.time()))
        self._local_enqueues += 1
        return ids

    def _enqueue_inline(self, job: NewJob) -> int | None:
        """Insert one small job on the loop's own thread, if that cannot wait; else None.

        A thread hop costs more than the insert: a one-row commit in WAL mode with
        ``synchronous=NORMAL`` is a write to the log, no flush (~20-40 us here), while a
        hop there and back wakes a thread and then the loop, and on a busy machine each
        wake-up waits for a core. What could block the loop goes to the thread instead:
        another connection holding the write lock (this connection waits for no lock: it
        gives up at once), a big payload, and the checkpoint (which flushes to disk; this
        connection never runs one itself, every _INLINE_CHECKPOINT_EVERY commits the
        thread does).
        """
        inline = self._inline
        if (
            inline is None
            or self._inline_commits >= _INLINE_CHECKPOINT_EVERY
            or len(job.args_json) > _INLINE_MAX_BYTES
        ):
            return None
        job_id = inline.write_now(
            lambda conn: _insert_one(conn, job, time.time()), one_statement=job.key is None
        )
        if isinstance(job_id, _Busy):
            return None
        self._inline_commits += 1
        return job_id

    # -- the Manager's side --------------------------------------------------------------

    async def claim(
        self, queues: Sequence[str] | None, limit: int, lease: float, worker: str
    ) -> list[Claimed]:
        """Claim up to *limit* due jobs, higher priority first, then FIFO."""
        queues = check_claim(queues, limit, lease, worker)
        return await self._write(lambda conn: _claim(conn, queues, limit, lease, worker))

    async def complete(self, id: int, token: int, result_json: str) -> bool:
        """Mark a claimed job succeeded; False when the claim was fenced out."""
        check_claimed(id, token)
        check_json_text("result_json", result_json)

        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE aw_jobs SET state = 'succeeded', result = ?, error = NULL, "
                "finished_at = ?, lease_until = NULL "
                "WHERE id = ? AND claims = ? AND state = 'running'",
                (result_json, time.time(), id, token),
            )
            return cursor.rowcount == 1

        return await self._write(write)

    async def fail(self, id: int, token: int, error: str, retry_at: float | None) -> bool:
        """Record a failed attempt: queued again at *retry_at*, or dead (None, or no
        attempts left); False when the claim was fenced out."""
        check_claimed(id, token)
        error = clean_error(error)
        retry_at = retry_time(retry_at)

        def write(conn: sqlite3.Connection) -> bool:
            now = time.time()
            cursor = conn.execute(
                "UPDATE aw_jobs SET "
                "state = CASE WHEN :retry_at IS NULL OR attempts >= max_attempts "
                "    THEN 'dead' ELSE 'queued' END, "
                "finished_at = CASE WHEN :retry_at IS NULL OR attempts >= max_attempts "
                "    THEN :now ELSE NULL END, "
                "run_at = coalesce(:retry_at, run_at), "
                "scheduled = coalesce(:retry_at > :now, 0), "
                # the worker stays: `asyncworkers show` names who ran the failed attempt
                "error = :error, lease_until = NULL "
                "WHERE id = :id AND claims = :token AND state = 'running'",
                {"retry_at": retry_at, "now": now, "error": error, "id": id, "token": token},
            )
            return cursor.rowcount == 1

        return await self._write(write)

    async def release(self, id: int, token: int) -> bool:
        """Put a claimed job back to queued without counting its attempt."""
        check_claimed(id, token)

        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE aw_jobs SET state = 'queued', attempts = attempts - 1, scheduled = 0, "
                "lease_until = NULL, worker = NULL "
                "WHERE id = ? AND claims = ? AND state = 'running'",
                (id, token),
            )
            return cursor.rowcount == 1

        return await self._write(write)

    async def heartbeat(self, held: Sequence[tuple[int, int]], lease: float) -> set[int]:
        """Renew the leases of *held* ``(id, token)``; the ids whose claim is lost."""
        check_lease(lease)
        pairs = check_held(held)
        if not pairs:
            return set()
        return await self._write(lambda conn: _renew(conn, pairs, lease))

    def sync_heartbeat(self) -> _SyncHeartbeat:
        """A blocking heartbeat on a connection of its own, for the heartbeat thread."""
        return _SyncHeartbeat(_Database(self.path, self._busy_timeout, self._give_up))

    async def requeue_expired(self) -> int:
        """Put running jobs whose lease is over back to queued (dead when out of attempts)."""

        def write(conn: sqlite3.Connection) -> int:
            now = time.time()
            cursor = conn.execute(
                "UPDATE aw_jobs SET "
                "state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END, "
                "finished_at = CASE WHEN attempts >= max_attempts THEN :now ELSE NULL END, "
                "error = 'lease expired: worker ' || coalesce(worker, '?') || "
                "    ' stopped renewing it during attempt ' || attempts, "
                "lease_until = NULL, worker = NULL, scheduled = 0 "
                "WHERE state = 'running' AND lease_until < :now",
                {"now": now},
            )
            return cursor.rowcount

        return await self._write(write)

    async def wait_for_work(self, timeout: float) -> None:
        """Return after *timeout* seconds, or sooner once another connection commits
        (``PRAGMA data_version``) or this store enqueued."""
        deadline = time.monotonic() + timeout
        seen_local = self._local_enqueues
        seen = await self._read(_data_version)
        while (left := deadline - time.monotonic()) > 0:
            await anyio.sleep(min(left, _WATCH_INTERVAL))
            if self._local_enqueues != seen_local or await self._read(_data_version) != seen:
                return

    # -- for people and tools ------------------------------------------------------------

    async def get(self, id: int) -> JobRecord | None:
        """The job with this id, or None."""
        check_id(id)
        rows = await self._read(
            lambda conn: conn.execute(
                f"SELECT {_COLUMNS} FROM aw_jobs WHERE id = ?", (id,)
            ).fetchall()
        )
        return _record(rows[0]) if rows else None

    async def result(self, id: int, timeout: float | None = None) -> Any:
        """Wait for the job to end and return its result (see :meth:`Store.result`)."""
        return await wait_result(self, check_id(id), check_timeout("timeout", timeout))

    async def counts(self, queue: str | None = None) -> dict[State, int]:
        """``{state: count}`` for every state."""
        check_queue_filter(queue)
        where, params = ("WHERE queue = ?", (queue,)) if queue is not None else ("", ())
        rows = await self._read(
            lambda conn: conn.execute(
                f"SELECT state, count(*) FROM aw_jobs {where} GROUP BY state", params
            ).fetchall()
        )
        counts: dict[State, int] = dict.fromkeys(STATES, 0)
        counts.update(rows)
        return counts

    async def queue_counts(self) -> dict[str, dict[State, int]]:
        """``{queue: {state: count}}``."""
        rows = await self._read(
            lambda conn: conn.execute(
                "SELECT queue, state, count(*) FROM aw_jobs GROUP BY queue, state"
            ).fetchall()
        )
        out: dict[str, dict[State, int]] = {}
        for queue, state, count in rows:
            out.setdefault(queue, dict.fromkeys(STATES, 0))[state] = count
        return out

    async def oldest_waiting(self) -> JobRecord | None:
        """The due queued job enqueued first, or None."""
        rows = await self._read(
            lambda conn: conn.execute(
                f"SELECT {_COLUMNS} FROM aw_jobs WHERE state = 'queued' AND run_at <= ? "
                "ORDER BY id LIMIT 1",
                (time.time(),),
            ).fetchall()
        )
        return _record(rows[0]) if rows else None

    async def dead(self, limit: int = 100) -> list[JobRecord]:
        """The dead letters, most recent first."""
        check_limit(limit)
        rows = await self._read(
            lambda conn: conn.execute(
                f"SELECT {_COLUMNS} FROM aw_jobs WHERE state = 'dead' "
                "ORDER BY finished_at DESC, id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return [_record(row) for row in rows]

    async def retry(self, id: int) -> bool:
        """A dead or cancelled job waits again with a fresh set of attempts."""
        check_id(id)

        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE aw_jobs SET state = 'queued', attempts = 0, run_at = ?, scheduled = 0, "
                "finished_at = NULL, result = NULL "
                "WHERE id = ? AND state IN ('dead', 'cancelled')",
                (time.time(), id),
            )
            return cursor.rowcount == 1

        ok = await self._write(write)
        self._local_enqueues += ok
        return ok

    async def cancel(self, id: int) -> bool:
        """Cancel a queued job; False when it is not waiting."""
        check_id(id)

        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE aw_jobs SET state = 'cancelled', finished_at = ?, "
                "error = 'cancelled while waiting' WHERE id = ? AND state = 'queued'",
                (time.time(), id),
            )
            return cursor.rowcount == 1

        return await self._write(write)

    async def jobs(
        self,
        *,
        state: State | None = None,
        queue: str | None = None,
        task: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        """Jobs that match every filter given, newest first, at most *limit*."""
        where, params = job_filters(state=state, queue=queue, task=task, limit=limit)
        clause = " AND ".join(f"{column} = ?" for column in where)
        rows = await self._read(
            lambda conn: conn.execute(
                f"SELECT {_COLUMNS} FROM aw_jobs {'WHERE ' + clause if clause else ''} "
                "ORDER BY id DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        )
        return [_record(row) for row in rows]

    async def purge(self, older_than: float, states: Collection[State] | None = None) -> int:
        """Delete ended jobs (or those of *states*) that finished before *older_than* (unix
        seconds), PURGE_BATCH rows per transaction; how many."""
        chosen = purge_states(older_than, states)
        # the first term repeats the ended-rows index's condition, so that SQLite uses it
        statement = (
            "DELETE FROM aw_jobs WHERE id IN (SELECT id FROM aw_jobs "
            "WHERE state IN ('succeeded', 'dead', 'cancelled') "
            f"AND state IN ({', '.join('?' * len(chosen))}) AND finished_at < ? LIMIT ?)"
        )

        def write(conn: sqlite3.Connection) -> int:
            return conn.execute(statement, (*chosen, older_than, PURGE_BATCH)).rowcount

        total = 0
        while (deleted := await self._write(write)) > 0:
            total += deleted
            if deleted < PURGE_BATCH:
                break
        return total

    async def schedule_mark(self, name: str) -> float | None:
        """The latest instant periodic task *name* was enqueued for, or None."""
        rows = await self._read(
            lambda conn: conn.execute(
                "SELECT last_at FROM aw_schedules WHERE name = ?", (name,)
            ).fetchall()
        )
        return float(rows[0][0]) if rows else None

    async def advance_schedule(
        self, name: str, seen: float | None, latest: float, jobs: Sequence[NewJob]
    ) -> bool:
        """Move the mark of *name* from *seen* to *latest* and add *jobs*, in one
        transaction, if the mark is still *seen*; True if this call did."""
        batch = list(jobs)

        def write(conn: sqlite3.Connection) -> bool:
            if seen is None:
                cursor = conn.execute(
                    "INSERT INTO aw_schedules (name, last_at) VALUES (?, ?) "
                    "ON CONFLICT (name) DO NOTHING",
                    (name, latest),
                )
            else:
                cursor = conn.execute(
                    "UPDATE aw_schedules SET last_at = ? WHERE name = ? AND last_at = ?",
                    (latest, name, seen),
                )
            if cursor.rowcount != 1:
                return False  # another worker moved it first: its jobs are in
            _insert(conn, batch, time.time())
            return True

        advanced = await self._write(write)
        self._local_enqueues += advanced and bool(batch)
        return advanced


class _SyncHeartbeat:
    """The blocking heartbeat of :class:`SQLiteStore`, on its own connection."""

    def __init__(self, db: _Database) -> None:
        self._db = db

    def beat(self, held: Sequence[tuple[int, int]], lease: float) -> set[int]:
        pairs = list(held)
        if not pairs:
            return set()
        self._db.connect()
        return self._db.write(lambda conn: _renew(conn, pairs, lease))

    def close(self) -> None:
        self._db.close()


# -- the statements, run in a thread -------------------------------------------------------


def _schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _check_readable(path: str, version: int) -> None:
    """A read-only store cannot create nor upgrade the schema: say what to do instead."""
    if version == len(MIGRATIONS):
        return
    if version == 0:
        raise StoreUnavailable(f"SQLite database {path} holds no asyncworkers jobs")
    if version > len(MIGRATIONS):
        raise StoreError(
            f"the database schema is version {version}, newer than this asyncworkers "
            f"knows ({len(MIGRATIONS)}): upgrade asyncworkers"
        )
    raise StoreError(
        f"the database schema of {path} is version {version}, older than this asyncworkers "
        f"({len(MIGRATIONS)}): open it once for writing (start a worker) to upgrade it"
    )


def _migrate(conn: sqlite3.Connection) -> None:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise StoreError(
            f"the database schema is version {version}, newer than this asyncworkers "
            f"knows ({len(MIGRATIONS)}): upgrade asyncworkers"
        )
    for step in MIGRATIONS[version:]:
        for statement in step:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")


def _insert(conn: sqlite3.Connection, jobs: list[NewJob], now: float) -> list[int]:
    """Insert in order; runs of jobs without a key go through one executemany each."""
    if len(jobs) == 1:  # no sequence reads for a lone job
        return [_insert_one(conn, jobs[0], now)]
    ids: list[int] = []
    run: list[NewJob] = []
    for job in jobs:
        if job.key is None:
            run.append(job)
            continue
        ids.extend(_insert_run(conn, run, now))
        run = []
        ids.append(_insert_keyed(conn, job, now))
    ids.extend(_insert_run(conn, run, now))
    return ids


def _insert_one(conn: sqlite3.Connection, job: NewJob, now: float) -> int:
    if job.key is not None:
        return _insert_keyed(conn, job, now)
    row_id = conn.execute(_INSERT, _row(job, now)).lastrowid
    assert row_id is not None  # an INSERT that did not fail made a row
    return row_id


def _row(job: NewJob, now: float) -> tuple[Any, ...]:
    run_at = now if job.run_at is None else job.run_at
    return (
        job.task,
        job.args_json,
        job.priority,
        job.queue,
        job.max_attempts,
        job.key,
        now,
        run_at,
        run_at > now,  # scheduled: out of the claim's index until due (_sqlite_schema)
    )


def _insert_run(conn: sqlite3.Connection, jobs: list[NewJob], now: float) -> list[int]:
    if not jobs:
        return []
    # We hold the write lock (BEGIN IMMEDIATE), so AUTOINCREMENT hands out the next ids in
    # order: the run gets the ids just above the sequence's value before it.
    before = _sequence(conn)
    conn.executemany(_INSERT, (_row(job, now) for job in jobs))
    after = _sequence(conn)
    if after - before != len(jobs):  # cannot happen under the write lock; never guess ids
        raise StoreError(f"SQLite handed out {after - before} ids for {len(jobs)} jobs")
    return list(range(before + 1, after + 1))


def _sequence(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'aw_jobs'").fetchone()
    return 0 if row is None else int(row[0])


def _insert_keyed(conn: sqlite3.Connection, job: NewJob, now: float) -> int:
    cursor = conn.execute(_INSERT + " ON CONFLICT (key) DO NOTHING", _row(job, now))
    if cursor.rowcount == 1 and cursor.lastrowid is not None:
        return cursor.lastrowid
    row = conn.execute("SELECT id FROM aw_jobs WHERE key = ?", (job.key,)).fetchone()
    return int(row[0])


# Scheduled rows now due join the ready ones: one probe of aw_jobs_scheduled when none is.
# INDEXED BY pins each plan (an error rather than a silent scan if it ever could not hold):
# with statistics from ANALYZE, SQLite has been seen to prefer another index and a sort.
_STAGE = (
    "UPDATE aw_jobs INDEXED BY aw_jobs_scheduled SET scheduled = 0 "
    "WHERE state = 'queued' AND scheduled = 1 AND run_at <= ?"
)
# The claim's walk of aw_jobs_ready, which holds no scheduled row. (run_at is checked again
# for rows written behind the store's back, and for a wall clock that went back.)
_PICK = (
    "SELECT id FROM aw_jobs INDEXED BY aw_jobs_ready "
    "WHERE state = 'queued' AND scheduled = 0 AND run_at <= ?"
)


def _claim(
    conn: sqlite3.Connection, queues: Sequence[str] | None, limit: int, lease: float, worker: str
) -> list[Claimed]:
    now = time.time()
    params: list[Any] = [now + lease, now, worker, now]
    where = ""
    if queues is not None:
        queues = list(queues)
        if not queues:
            return []
        where = f" AND queue IN ({', '.join('?' * len(queues))})"
        params.extend(queues)
    params.append(limit)
    conn.execute(_STAGE, (now,))
    rows = conn.execute(
        "UPDATE aw_jobs SET state = 'running', attempts = attempts + 1, claims = claims + 1, "
        "lease_until = ?, started_at = ?, worker = ? "
        f"WHERE id IN ({_PICK}{where} ORDER BY priority DESC, id LIMIT ?) "
        "RETURNING id, task, args, queue, priority, attempts, max_attempts, lease_until, claims",
        params,
    ).fetchall()
    claimed = [Claimed(*row) for row in rows]
    claimed.sort(key=lambda c: (-c.priority, c.id))
    return claimed


def _renew(conn: sqlite3.Connection, pairs: list[tuple[int, int]], lease: float) -> set[int]:
    until = time.time() + lease
    lost: set[int] = set()
    for job_id, token in pairs:
        cursor = conn.execute(
            "UPDATE aw_jobs SET lease_until = ? WHERE id = ? AND claims = ? AND state = 'running'",
            (until, job_id, token),
        )
        if cursor.rowcount != 1:
            lost.add(job_id)
    return lost


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _record(row: tuple[Any, ...]) -> JobRecord:
    values = list(row)  # _COLUMNS lists JobRecord's fields in its order
    with contextlib.suppress(ValueError):  # a hostile row's args stay as stored
        values[2] = decode_json(values[2])
    values[8] = decode_json(values[8])
    return JobRecord(*values)
