"""A lane: one connection of a pool kept for one stream of statements that run one at a time.

The worker's claims come from one claim loop, its completions from one drain task
(_pg_batch): each stream runs one statement at a time anyway. Acquiring a pool connection
for each statement costs more Python than the statement's own (the pool's bookkeeping,
its reset hook, a round of its queue), so a lane acquires once and keeps the connection
until it is lost, the caller is cancelled mid-statement, or the store closes; the next
statement then acquires afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import asyncpg

from ._pg_connect import is_connection_lost

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Conn = PoolConnectionProxy[asyncpg.Record]

T = TypeVar("T")


class Lane:
    def __init__(self) -> None:
        self._pool: asyncpg.Pool | None = None
        self._conn: Conn | None = None
        self._lock = asyncio.Lock()

    async def run(self, pool: asyncpg.Pool, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """``fn(conn)`` on the lane's connection (acquired from *pool* when it has none).

        On any error the connection goes back to the pool, which resets it (or replaces
        it, when lost): a statement cut off midway leaves a connection in a state we do
        not know. The caller decides whether to run *fn* again.
        """
        async with self._lock:
            if self._conn is None or self._pool is not pool:
                await self._give_back()
                self._conn = await pool.acquire()
                self._pool = pool
            try:
                return await fn(self._conn)
            except BaseException as exc:
                if isinstance(exc, Exception) and is_connection_lost(exc):
                    _terminate(self._conn)  # never serves another query
                await self._give_back()
                raise

    async def close(self) -> None:
        """Hand the connection back to its pool (before the pool closes)."""
        async with self._lock:
            await self._give_back()

    async def _give_back(self) -> None:
        conn, self._conn = self._conn, None
        pool, self._pool = self._pool, None
        if conn is None or pool is None:
            return
        # shielded: a connection the pool never gets back is a connection lost to it
        with anyio.CancelScope(shield=True):
            try:
                await pool.release(conn)
            except Exception:  # lost already: the pool replaces it
                _terminate(conn)


def _terminate(conn: Any) -> None:
    # InterfaceError: released already by asyncpg's own connection-lost path
    with contextlib.suppress(asyncpg.InterfaceError):
        conn.terminate()
