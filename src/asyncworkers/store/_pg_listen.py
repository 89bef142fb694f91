"""Waking idle workers at once: LISTEN on a connection of its own.

Every statement that inserts jobs fires a NOTIFY (a trigger of the schema; see
_pg_migrations), and so do ``release``, ``retry`` and ``requeue_expired`` when they make
work due. A notification sets an event; ``wait`` returns when it is set or after the
timeout, so that a lost notification (or a lost listening connection) costs at most one
poll interval, never a job. A listening connection that dies is replaced at the next wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg

from ._pg_connect import Target, is_connection_lost


class Listener:
    def __init__(self, target: Target, channel: str) -> None:
        self._target = target
        self._channel = channel
        self._conn: asyncpg.Connection | None = None
        self._woken = asyncio.Event()

    async def start(self) -> None:
        """LISTEN (again, after a lost connection); on failure stay silent: polling covers."""
        if self._conn is not None and not self._conn.is_closed():
            return
        try:
            conn = await asyncpg.connect(
                self._target.dsn, timeout=5, server_settings=self._target.settings("listen")
            )
        except Exception as exc:
            if is_connection_lost(exc):
                return
            raise
        try:
            await conn.add_listener(self._channel, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._on_terminated)
        self._conn = conn
        # work may have been made while nobody listened: let the caller look once
        self._woken.set()

    def _on_notify(self, *_: Any) -> None:
        self._woken.set()

    def _on_terminated(self, *_: Any) -> None:
        self._conn = None

    async def wait(self, timeout: float) -> None:
        await self.start()
        # a notification that came while the caller was busy counts: it may be for work
        # the caller's last claim did not see
        # asyncio.timeout, not wait_for: no task to make, start and reap per wait (a
        # wake-up is on the pick-up path of every job an idle worker gets)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._woken.wait()
        self._woken.clear()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            with contextlib.suppress(Exception):  # closing a broken connection: nothing to save
                await asyncio.wait_for(conn.close(), 2)
        finally:
            if not conn.is_closed():
                conn.terminate()
