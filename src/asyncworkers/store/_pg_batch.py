"""Group commit for completions: concurrent ``complete`` calls share one UPDATE.

Each call queues its ``(id, token, result)`` and waits. One drain task writes everything
queued in one fenced statement (one round trip, one commit, one WAL flush), then everything
that queued up meanwhile, and so on until nothing is left. So a lone completion is written at
once, with no timer to wait for, and under load the batch grows by itself to what arrived
during the previous write: pgqueuer's buffered completions without their flush delay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Write = tuple[int, int, str]  # id, token, result JSON
Flush = Callable[[list[Write]], Awaitable[set[int]]]  # -> the ids whose write was applied


class CompletionBatcher:
    def __init__(self, flush: Flush, *, max_batch: int = 1000) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._pending: list[tuple[Write, asyncio.Future[bool]]] = []
        self._drain_task: asyncio.Task[None] | None = None

    async def complete(self, write: Write) -> bool:
        """True when the write was applied, False when it was fenced out."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((write, fut))
        if self._drain_task is None:
            self._drain_task = asyncio.create_task(self._drain(), name="asyncworkers-pg-complete")
        # A caller cancelled here leaves its write queued: it is still made (at least once).
        return await fut

    async def _drain(self) -> None:
        try:
            # let every job that finished in this loop iteration join the first batch
            await asyncio.sleep(0)
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._write(batch)
        finally:
            self._drain_task = None
            for _, fut in self._pending:  # only when cancelled: nobody will write these
                fut.cancel()
            self._pending.clear()

    async def _write(self, batch: list[tuple[Write, asyncio.Future[bool]]]) -> None:
        try:
            applied = await self._flush([w for w, _ in batch])
        except Exception as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        except BaseException:
            for _, fut in batch:
                fut.cancel()
            raise
        for (id, _, _), fut in batch:
            if not fut.done():
                fut.set_result(id in applied)

    async def drain(self) -> None:
        """Wait until every queued completion is written (before closing the pool)."""
        while self._drain_task is not None:
            await asyncio.wait({self._drain_task})  # its outcome went to the callers
