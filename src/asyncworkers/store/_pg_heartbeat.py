"""The blocking heartbeat: a private event loop and connection, for the Manager's thread.

asyncpg has no blocking API, so the heartbeat thread runs its own small asyncio loop (never
the application's) and keeps one connection of its own on it: a job that blocks the main
loop cannot starve it, and it never shares a connection with the pool. A lost connection is
replaced at the next beat; a beat that cannot reach the database raises
``StoreUnavailable`` (the Manager keeps beating; the leases run on meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence

import asyncpg

from ._pg_connect import Target, with_retries

# A beat must end well within a lease, or it is worthless: bound every wait on the server.
_BEAT_TIMEOUT = 10.0


class PgSyncHeartbeat:
    """``beat(held, lease) -> lost ids`` from one thread at a time; ``close()`` once."""

    def __init__(self, target: Target, sql: str, settings: dict[str, str]) -> None:
        self._target = target
        self._sql = sql
        self._settings = {**target.settings("heartbeat"), **settings}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: asyncpg.Connection | None = None
        self._lock = threading.Lock()  # a loop runs in one thread at a time
        self._closed = False

    def beat(self, held: Sequence[tuple[int, int]], lease: float) -> set[int]:
        """Renew *held*; with nothing held, open the connection (if it is not open) and
        return: the LeaseKeeper does so at its start, so that the first renewal does not
        pay for a connection (~5 round trips: a second at 200 ms, a short lease's worth)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this heartbeat is closed")
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            if not held:
                self._loop.run_until_complete(with_retries(self._target, self._warm, attempts=2))
                return set()
            return self._loop.run_until_complete(self._beat(held, lease))

    async def _warm(self, _again: bool) -> None:
        await self._connection()

    async def _beat(self, held: Sequence[tuple[int, int]], lease: float) -> set[int]:
        ids = [i for i, _ in held]
        tokens = [t for _, t in held]

        async def once(_again: bool) -> set[int]:
            conn = await self._connection()
            try:
                rows = await conn.fetch(self._sql, ids, tokens, lease, timeout=_BEAT_TIMEOUT)
            except BaseException:
                # a connection that failed mid-beat may be in any state: start afresh
                self._drop()
                raise
            return set(ids) - {r[0] for r in rows}

        # a timed-out beat counts as a lost connection: retried once, then StoreUnavailable
        return await with_retries(self._target, once, attempts=2)

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self._target.dsn,
                timeout=_BEAT_TIMEOUT,
                statement_cache_size=4,
                server_settings=self._settings,
            )
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    def close(self) -> None:
        """Close the connection and the private loop; callable from any thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, self._loop = self._loop, None
            try:
                if loop is not None and self._conn is not None and _no_running_loop():
                    with contextlib.suppress(Exception):  # then terminated below
                        loop.run_until_complete(asyncio.wait_for(self._conn.close(), 2))
            finally:
                self._drop()  # a loop runs in this thread (or close failed): no goodbye
                if loop is not None:
                    loop.close()


def _no_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return True
    return False
