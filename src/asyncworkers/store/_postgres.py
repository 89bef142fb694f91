"""PostgresStore: the job store for many workers on many machines (asyncpg).

How it keeps its promises:

- **Claims** walk a partial index in claim order with ``FOR UPDATE SKIP LOCKED``: workers
  claiming at once never wait on each other nor hand out one row twice.
- **Fencing**: every write about a claimed job matches the claim's token (see _pg_sql).
- **Completions** from jobs that finish together share one UPDATE and one commit
  (_pg_batch), which is most of the throughput on a fsync'ing server.
- **The worker's writes** (claim, complete, fail, release, heartbeat, requeue) go through
  a pool of their own whose commits do not wait for the WAL flush (``synchronous_commit =
  off``) unless ``durable_writes=True``: on a fsync'ing server that wait, not the SQL,
  bounds how many short jobs a worker runs per second. A server crash may undo the last
  fraction of a second of them; each such loss can only make a job run again (a claim
  undone: the job is queued again while its first run goes on; an outcome undone: the job
  is running again until its lease ends), the promise being at least once. Fencing holds
  through it: a token carries a random half drawn at each claim, so a claim that the crash
  undid and the claim made after it never share a token. Enqueues (and the operator's
  retry, cancel, purge) always wait for the flush: a job once enqueued is never lost.
- **Wake-ups**: a LISTEN connection of its own (_pg_listen); inserts NOTIFY by trigger.
- **Schema**: versioned migrations under an advisory lock (_pg_migrations).
- **Lost connections**: a pool connection killed under a call is replaced and the call run
  again (_pg_connect); after a few seconds without a server, ``StoreUnavailable`` names the
  host and port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from ._errors import StoreError, StoreUnavailable
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
from ._pg_batch import CompletionBatcher, Write
from ._pg_connect import Target, is_connection_lost, parse_target, unavailable, with_retries
from ._pg_heartbeat import PgSyncHeartbeat
from ._pg_lane import Lane
from ._pg_listen import Listener
from ._pg_migrations import channel_for, migrate
from ._pg_sql import statements
from ._protocol import (
    MAX_PAYLOAD_BYTES,
    PURGE_BATCH,
    STATES,
    Claimed,
    JobRecord,
    NewJob,
    State,
)

__all__ = ["PostgresStore"]

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Conn = PoolConnectionProxy[asyncpg.Record]

T = TypeVar("T")

# A row this big is dead-lettered by the claim, never shipped to a worker: loading it could
# exhaust the worker's memory. Rows over MAX_PAYLOAD_BYTES but under this are handed out,
# and the Manager rejects them (with the same wording).
_CLAIM_GUARD_BYTES = 16 * MAX_PAYLOAD_BYTES

# rows per enqueue_many statement: big enough to amortize a round trip, small enough that
# one statement's arrays stay a few MB
_ENQUEUE_CHUNK = 5000
# claims whose last write ended in StoreUnavailable, remembered for the write's retry (the
# oldest are forgotten past this: a Manager retries within seconds or gives the claim up)
_MAYBE_APPLIED_KEPT = 10_000


class PostgresStore(EnqueueFields):
    """Jobs in PostgreSQL, shared by any number of worker processes and machines.

    :param dsn: ``postgresql://user@host:port/database``; the query parameters
        ``schema=NAME`` and ``durable_writes=true`` are taken as the options of the same
        names (and not sent to the server), so that a URL alone can say it all
    :param schema: the schema that holds the tables (created, then upgraded by versioned
        migrations, at ``open``); default ``asyncworkers``
    :param pool_size: connections of the pool for enqueues and queries; the store also
        keeps up to 4 for the worker's writes, one for LISTEN, and each
        ``sync_heartbeat()`` one of its own
    :param connect_timeout: seconds to wait for a connection before ``StoreUnavailable``
    :param durable_writes: make the worker's writes (claims, outcomes, heartbeats) wait
        for the WAL flush too. The default (False) lets a server crash undo the last
        fraction of a second of them, whose jobs then run again (see above); it takes the
        fsyncs out of the claim-run-complete loop
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
        durable_writes: bool | None = None,
    ) -> None:
        self._target: Target = parse_target(dsn, schema)
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 2:
            raise ValueError(f"pool_size must be an int >= 2, got {pool_size!r}")
        if (
            isinstance(connect_timeout, bool)
            or not isinstance(connect_timeout, int | float)
            or not connect_timeout > 0
        ):
            raise ValueError(f"connect_timeout must be seconds > 0, got {connect_timeout!r}")
        if durable_writes is None:
            durable_writes = bool(self._target.durable_writes)
        if not isinstance(durable_writes, bool):
            raise TypeError(f"durable_writes must be a bool, got {durable_writes!r}")
        self._durable_writes = durable_writes
        self._pool_size = pool_size
        self._connect_timeout = float(connect_timeout)
        self._sql = statements(self._target.schema)
        self._channel = channel_for(self._target.schema)
        self._pool: asyncpg.Pool | None = None  # enqueues, reads, operators' writes
        self._worker: asyncpg.Pool | None = None  # the worker's writes (module docstring)
        self._listener: Listener | None = None
        self._batcher = CompletionBatcher(self._write_completions)
        self._maybe_applied: dict[tuple[int, int], None] = {}  # insertion-ordered set
        self._claim_lane = Lane()
        self._complete_lane = Lane()
        self._open_lock = asyncio.Lock()

    @property
    def schema(self) -> str:
        return self._target.schema

    def __repr__(self) -> str:
        return f"PostgresStore({self._target.where!r}, schema={self._target.schema!r})"

    async def __aenter__(self) -> PostgresStore:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, create or upgrade the schema, start listening for new work."""
        async with self._open_lock:  # two tasks opening at once: one pool, not two
            if self._pool is None:
                await self._open()

    async def _open(self) -> None:
        conn = await self._connect()
        try:
            await migrate(conn, self._target.schema)
        except Exception as exc:
            conn.terminate()
            if is_connection_lost(exc):
                raise unavailable(self._target, exc) from exc
            raise
        except BaseException:
            conn.terminate()
            raise
        await conn.close()
        listener = Listener(self._target, self._channel)
        pools: list[asyncpg.Pool] = []
        try:
            pools.append(await self._new_pool("pool", self._pool_size, {}))
            # one claims while another writes completions and a third beats or sweeps
            # a lane each for claims and completions (_pg_lane), two for the other writes
            pools.append(await self._new_pool("worker", 4, self._write_settings()))
            await listener.start()
        except BaseException as exc:
            await listener.close()
            for pool in pools:
                pool.terminate()
            if isinstance(exc, Exception) and is_connection_lost(exc):
                raise unavailable(self._target, exc) from exc
            raise
        self._pool, self._worker = pools
        self._listener = listener

    def _write_settings(self) -> dict[str, str]:
        # No bitmap scans for the worker's writes: a bitmap scan of the partial index of
        # running rows visits every dead entry each time (it never marks them dead), and
        # a busy queue leaves one per job until vacuum comes; a plain index scan marks them
        # and skips them after (the fenced writes went from 0.35 to 0.27 ms here).
        # No sequential scans either: every statement of the worker finds its rows by an
        # index (by id, by lease, in claim order, by due time), and a prepared statement's
        # generic plan cannot tell how many rows `run_at <= now()` matches: with a few
        # thousand scheduled rows it chose to read the whole table to stage none of them.
        settings = {"enable_bitmapscan": "off", "enable_seqscan": "off"}
        if not self._durable_writes:
            settings["synchronous_commit"] = "off"
        return settings

    async def _new_pool(self, role: str, size: int, settings: dict[str, str]) -> asyncpg.Pool:
        return await asyncpg.create_pool(
            self._target.dsn,
            min_size=1,
            max_size=size,
            timeout=self._connect_timeout,
            server_settings={**self._target.settings(role), **settings},
            reset=_reset,
        )

    async def _connect(self) -> asyncpg.Connection:
        try:
            return await asyncpg.connect(
                self._target.dsn,
                timeout=self._connect_timeout,
                server_settings=self._target.settings("migrate"),
            )
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            # refused, no such database, authentication: each named with where it happened
            raise unavailable(self._target, exc) from exc

    async def close(self) -> None:
        """Write the completions still queued, then close every connection (idempotent)."""
        try:
            await self._batcher.drain()
        finally:
            for lane in (self._claim_lane, self._complete_lane):
                await lane.close()
            pools = [p for p in (self._pool, self._worker) if p is not None]
            self._pool = self._worker = None
            listener, self._listener = self._listener, None
            if listener is not None:
                await listener.close()
            for pool in pools:
                try:
                    # a graceful close waits for connections in use; a broken one may hang
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(pool.close(), 5)
                finally:
                    pool.terminate()

    # -- plumbing ------------------------------------------------------------------------

    async def _run(
        self,
        fn: Callable[[Conn, bool], Awaitable[T]],
        *,
        worker: bool = False,
        lane: Lane | None = None,
        claims: Sequence[tuple[int, int]] = (),
    ) -> T:
        """``fn(conn, again)`` on a pool connection, run again on a fresh one if it dies.
        *worker*: one of the worker's writes, on the worker's pool; *lane*: on that lane's
        connection of the worker's pool; *claims*: the ``(id, token)`` claims the write is
        about, whose outcome a write that ends in StoreUnavailable may have recorded."""

        async def once(again: bool) -> T:
            pool = self._worker if worker or lane is not None else self._pool
            if pool is None:
                raise StoreError(f"{self!r} is not open: await store.open() first")
            if lane is not None:
                return await lane.run(pool, lambda conn: fn(conn, again))
            async with pool.acquire() as conn:
                try:
                    return await fn(conn, again)
                except Exception as exc:
                    if is_connection_lost(exc):
                        _discard(conn)
                    raise

        if not claims:
            return await with_retries(self._target, once)
        maybe = self._maybe_applied
        again = any(claim in maybe for claim in claims)
        try:
            result = await with_retries(self._target, once, again=again)
        except StoreUnavailable:
            # the last run may have been applied with only its reply lost: when the caller
            # writes it again (the Manager does, once the server is back), that write must
            # accept the row in the state this one left, or it reads as fenced out
            for claim in claims:
                maybe[claim] = None
            while len(maybe) > _MAYBE_APPLIED_KEPT:
                del maybe[next(iter(maybe))]
            raise
        if again:
            for claim in claims:
                maybe.pop(claim, None)
        return result

    async def _notify(self) -> None:
        await self._run(lambda conn, _: conn.execute(self._sql.notify, self._channel))

    # -- enqueue -------------------------------------------------------------------------

    async def _enqueue_one(self, job: NewJob) -> int:
        sql = self._sql

        async def insert(conn: Conn, _: bool) -> int:
            new_id: int | None = await conn.fetchval(
                sql.enqueue,
                job.task,
                job.args_json,
                job.priority,
                job.queue,
                job.max_attempts,
                job.key,
                job.run_at,
            )
            if new_id is None:  # the key is taken: the first job's id
                row = await conn.fetchrow(sql.ids_by_key, [job.key])
                assert row is not None  # keyed rows are only deleted by purge
                new_id = int(row["id"])
            return new_id

        return await self._run(insert)

    async def enqueue_many(self, jobs: Iterable[NewJob]) -> list[int]:
        """Add many jobs in one transaction (all or none), up to 5,000 per statement; their
        ids in input order."""
        batch = list(jobs)
        for i, job in enumerate(batch):
            if not isinstance(job, NewJob):
                raise TypeError(
                    f"enqueue_many takes NewJob items (see store._jobs.new_job); item {i} is "
                    f"{type(job).__name__}"
                )
        if len(batch) == 1:  # what TaskRegistry.enqueue sends: the plain INSERT is cheaper
            return [await self._enqueue_one(batch[0])]
        chunks = [batch[i : i + _ENQUEUE_CHUNK] for i in range(0, len(batch), _ENQUEUE_CHUNK)]

        async def insert(conn: Conn, _: bool) -> list[int]:
            ids: list[int] = []
            # one transaction: a file of jobs is added whole or not at all (a lost
            # connection rolls it back, and the whole of it is run again)
            async with conn.transaction():
                for chunk in chunks:
                    ids.extend(await self._enqueue_chunk(conn, chunk))
            return ids

        return await self._run(insert)

    async def _enqueue_chunk(self, conn: Conn, chunk: list[NewJob]) -> list[int]:
        sql = self._sql
        columns = (
            [j.task for j in chunk],
            [j.args_json for j in chunk],
            [j.priority for j in chunk],
            [j.queue for j in chunk],
            [j.max_attempts for j in chunk],
            [j.key for j in chunk],
            [j.run_at for j in chunk],
        )

        rows = await conn.fetch(sql.enqueue_many, *columns)
        ids: list[int | None] = [r["id"] for r in rows]
        taken = [j.key for j, i in zip(chunk, ids, strict=True) if i is None]
        if not taken:
            return ids  # type: ignore[return-value]  # every row inserted
        # keys used before (or twice in this chunk): the first job's id
        by_key = {r["key"]: r["id"] for r in await conn.fetch(sql.ids_by_key, taken)}
        return [by_key[j.key] if i is None else i for j, i in zip(chunk, ids, strict=True)]

    # -- the Manager's side --------------------------------------------------------------

    async def claim(
        self, queues: Sequence[str] | None, limit: int, lease: float, worker: str
    ) -> list[Claimed]:
        """Claim up to *limit* due jobs, priority first then FIFO, each with a lease."""
        queues = check_claim(queues, limit, lease, worker)
        if queues is not None and not queues:
            return []
        sql = self._sql
        params: list[Any] = [limit, float(lease), worker, _CLAIM_GUARD_BYTES]
        statement = sql.claim_any
        if queues is not None:
            statement = sql.claim_queues
            params.append(queues)

        async def take(conn: Conn, _: bool) -> list[asyncpg.Record]:
            return await conn.fetch(statement, *params)

        rows = await self._run(take, lane=self._claim_lane)
        claimed = [
            Claimed(
                id=r["id"],
                task=r["task"],
                args_json=r["args"],
                queue=r["queue"],
                priority=r["priority"],
                attempt=r["attempts"],
                max_attempts=r["max_attempts"],
                lease_until=r["lease_until"],
                token=r["token"],
            )
            for r in rows
            if r["state"] == "running"  # not an oversized row the claim dead-lettered
        ]
        claimed.sort(key=lambda c: (-c.priority, c.id))
        return claimed

    async def complete(self, id: int, token: int, result_json: str) -> bool:
        """Mark a claimed job succeeded; False when fenced out. Completions that arrive
        together are written by one statement (group commit)."""
        check_claimed(id, token)
        check_json_text("result_json", result_json)
        return await self._batcher.complete((id, token, result_json))

    async def _write_completions(self, writes: list[Write]) -> set[int]:
        ids = [w[0] for w in writes]
        tokens = [w[1] for w in writes]
        results = [w[2] for w in writes]
        sql = self._sql

        async def write(conn: Conn, again: bool) -> set[int]:
            rows = await conn.fetch(sql.complete, ids, tokens, results, again)
            return {r[0] for r in rows}

        claims = [(w[0], w[1]) for w in writes]
        return await self._run(write, lane=self._complete_lane, claims=claims)

    async def fail(self, id: int, token: int, error: str, retry_at: float | None) -> bool:
        """Record a failed attempt: queued again at *retry_at*, or dead (None, or out of
        attempts). False when fenced out."""
        check_claimed(id, token)
        error = clean_error(error)
        retry_at = retry_time(retry_at)
        sql = self._sql

        async def write(conn: Conn, again: bool) -> str | None:
            state: str | None = await conn.fetchval(sql.fail, id, token, error, retry_at, again)
            return state

        state = await self._run(write, worker=True, claims=[(id, token)])
        if state == "queued":
            await self._notify()
        return state is not None

    async def release(self, id: int, token: int) -> bool:
        """Back to queued without counting the attempt; False when fenced out."""
        check_claimed(id, token)
        sql = self._sql

        async def write(conn: Conn, again: bool) -> bool:
            return await conn.fetchval(sql.release, id, token, again) is not None

        released = await self._run(write, worker=True, claims=[(id, token)])
        if released:
            await self._notify()
        return released

    async def heartbeat(self, held: Sequence[tuple[int, int]], lease: float) -> set[int]:
        """Renew the leases of ``(id, token)`` pairs; the ids whose lease is lost."""
        check_lease(lease)
        pairs = check_held(held)
        if not pairs:
            return set()
        ids = [i for i, _ in pairs]
        tokens = [t for _, t in pairs]
        sql = self._sql

        async def beat(conn: Conn, _: bool) -> set[int]:
            rows = await conn.fetch(sql.heartbeat, ids, tokens, float(lease))
            return set(ids) - {r[0] for r in rows}

        return await self._run(beat, worker=True)

    def sync_heartbeat(self) -> PgSyncHeartbeat:
        """A blocking heartbeat with a connection (and event loop) of its own."""
        return PgSyncHeartbeat(self._target, self._sql.heartbeat, self._write_settings())

    async def requeue_expired(self) -> int:
        """Expired leases back to queued (dead when out of attempts); how many."""
        sql = self._sql

        async def write(conn: Conn, _: bool) -> list[asyncpg.Record]:
            return await conn.fetch(sql.requeue_expired)

        rows = await self._run(write, worker=True)
        if any(r["state"] == "queued" for r in rows):
            await self._notify()
        return len(rows)

    async def wait_for_work(self, timeout: float) -> None:
        """Return at the next NOTIFY of new work, or after *timeout* seconds."""
        listener = self._listener
        if listener is None:
            raise StoreError(f"{self!r} is not open: await store.open() first")
        await listener.wait(timeout)

    # -- people and tools ----------------------------------------------------------------

    async def get(self, id: int) -> JobRecord | None:
        check_id(id)
        row = await self._run(lambda conn, _: conn.fetchrow(self._sql.get, id))
        return None if row is None else _record(row)

    async def result(self, id: int, timeout: float | None = None) -> Any:
        """Wait for the job to end; its result (``JobDead``, ``JobCancelled``, ``KeyError``,
        ``TimeoutError`` otherwise)."""
        return await wait_result(self, check_id(id), check_timeout("timeout", timeout))

    async def counts(self, queue: str | None = None) -> dict[State, int]:
        check_queue_filter(queue)
        rows = await self._run(lambda conn, _: conn.fetch(self._sql.counts, queue))
        found = {r["state"]: r["n"] for r in rows}
        return {state: found.get(state, 0) for state in STATES}

    async def queue_counts(self) -> dict[str, dict[State, int]]:
        rows = await self._run(lambda conn, _: conn.fetch(self._sql.queue_counts))
        out: dict[str, dict[State, int]] = {}
        for r in rows:
            out.setdefault(r["queue"], dict.fromkeys(STATES, 0))[r["state"]] = r["n"]
        return out

    async def oldest_waiting(self) -> JobRecord | None:
        row = await self._run(lambda conn, _: conn.fetchrow(self._sql.oldest_waiting))
        return None if row is None else _record(row)

    async def dead(self, limit: int = 100) -> list[JobRecord]:
        check_limit(limit)
        rows = await self._run(lambda conn, _: conn.fetch(self._sql.dead, limit))
        return [_record(r) for r in rows]

    async def retry(self, id: int) -> bool:
        """A dead or cancelled job gets a fresh set of attempts; False otherwise."""
        check_id(id)
        row = await self._run(lambda conn, _: conn.fetchval(self._sql.retry, id))
        if row is not None:
            await self._notify()
        return row is not None

    async def cancel(self, id: int) -> bool:
        """Cancel a queued job; False when it is not waiting."""
        check_id(id)
        return await self._run(lambda conn, _: conn.fetchval(self._sql.cancel, id)) is not None

    async def jobs(
        self,
        *,
        state: State | None = None,
        queue: str | None = None,
        task: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        """Jobs that match every filter given, newest first, at most *limit*."""
        job_filters(state=state, queue=queue, task=task, limit=limit)
        rows = await self._run(
            lambda conn, _: conn.fetch(self._sql.jobs, state, queue, task, limit)
        )
        return [_record(r) for r in rows]

    async def purge(self, older_than: float, states: Collection[State] | None = None) -> int:
        """Delete ended jobs (or those of *states*) finished before *older_than* (unix
        seconds), PURGE_BATCH rows per transaction; how many."""
        chosen = list(purge_states(older_than, states))
        when = float(older_than)
        total = 0
        while True:
            n: int = await self._run(
                lambda conn, _: conn.fetchval(self._sql.purge, when, chosen, PURGE_BATCH)
            )
            total += n
            if n < PURGE_BATCH:
                return total

    async def schedule_mark(self, name: str) -> float | None:
        """The latest instant periodic task *name* was enqueued for, or None."""
        value = await self._run(lambda conn, _: conn.fetchval(self._sql.schedule_mark, name))
        return None if value is None else float(value)

    async def advance_schedule(
        self, name: str, seen: float | None, latest: float, jobs: Sequence[NewJob]
    ) -> bool:
        """Move the mark of *name* from *seen* to *latest* and add *jobs*, in one
        transaction, if the mark is still *seen*; True if this call did."""
        batch = list(jobs)
        sql = self._sql

        async def write(conn: Conn, _: bool) -> bool:
            async with conn.transaction():
                if seen is None:
                    moved = await conn.fetchval(sql.schedule_insert, name, float(latest))
                else:
                    moved = await conn.fetchval(
                        sql.schedule_update, name, float(latest), float(seen)
                    )
                if moved is None:
                    return False  # another worker moved it first: its jobs are in
                for start in range(0, len(batch), _ENQUEUE_CHUNK):
                    await self._enqueue_chunk(conn, batch[start : start + _ENQUEUE_CHUNK])
                return True

        # run again after a lost connection: a commit whose reply was lost reads as a
        # mark moved by someone else (False), and the jobs are in either way
        return await self._run(write)


async def _reset(conn: asyncpg.Connection) -> None:
    """Back into the pool: roll back a transaction left open, and nothing else. asyncpg's
    default reset costs a round trip per call (RESET ALL, UNLISTEN *, ...) for state these
    connections never change: they run single statements, LISTEN has its own connection."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def _record(row: asyncpg.Record) -> JobRecord:
    try:
        args = json.loads(row["args"])
    except ValueError:  # a hostile row: show it as it is stored
        args = row["args"]
    return JobRecord(
        id=row["id"],
        task=row["task"],
        args=args,
        state=row["state"],
        priority=row["priority"],
        queue=row["queue"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        result=decode_json(row["result"]),
        error=row["error"],
        key=row["key"],
        enqueued_at=row["enqueued_at"],
        run_at=row["run_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        lease_until=row["lease_until"],
        worker=row["worker"],
    )


def _discard(conn: Conn) -> None:
    """Keep a connection whose state is unknown out of the pool.

    When the server ends a connection mid-query, asyncpg may already have handed the pool's
    proxy back (its connection-lost path releases it) by the time the error reaches us; the
    proxy then refuses every call with InterfaceError, and the pool replaces the dead
    connection itself. Either way it never serves another query.
    """
    with contextlib.suppress(asyncpg.InterfaceError):
        conn.terminate()
