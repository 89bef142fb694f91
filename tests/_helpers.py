"""Helpers shared by the runtime tests: hang guards and controllable jobs (no sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio

# Converts a wait that never ends into a failure; never an assertion about speed.
HANG_GUARD = 30.0


@contextmanager
def no_hang() -> Iterator[None]:
    """Turn a wait that never ends into a failure; never an assertion about speed."""
    with anyio.fail_after(HANG_GUARD):
        yield


async def settle(rounds: int = 20) -> None:
    """Give every ready task and callback a bounded number of loop iterations to run."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def until_blocked(task: asyncio.Task[Any]) -> None:
    """Let *task* run until it waits on something; fail if it finished instead."""
    await settle()
    assert not task.done(), f"{task!r} was expected to block, but it finished"


class Blocker:
    """A job body that says when it started and runs until released (or cancelled)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.starts = 0
        self.saw_cancel = False
        self.returned = False

    async def run(self, value: int = 0) -> int:
        self.starts += 1
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.saw_cancel = True
            raise
        self.returned = True
        return value


async def double(x: int) -> int:
    return 2 * x


async def forever() -> None:
    """Waits for an event nobody sets: only a cancellation or a timeout ends it."""
    await asyncio.Event().wait()


class Boom(Exception):
    """A job's own failure."""
