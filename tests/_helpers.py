"""Helpers shared by the tests: the loops, hang guards, waits for the right thing, and
controllable job bodies.

Nothing here sleeps to synchronise. A test waits for an event the job sets, for a job to
end, or (to see that something did *not* happen) for every task to be blocked, which is
what ``anyio.wait_all_tasks_blocked()`` waits for: whatever could run has run. The hang
guards below only turn a wait that never ends into a failure; they are never assertions
about speed, so they are generous.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import anyio
import pytest
import uvloop

import asyncworkers as aw

# Every async test runs once on each of these (tests/conftest.py); the SyncRuntime and the
# child-process tests take the same names as a parameter.
LOOP_FACTORIES: Mapping[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}
LOOPS: tuple[str, ...] = tuple(LOOP_FACTORIES)

# Converts a wait that never ends into a failure; never an assertion about speed.
HANG_GUARD = 30.0
# The same for a child Python process, whose start-up alone takes seconds on a loaded machine.
SUBPROCESS_GUARD = 60.0

# For a timeout that must fire only after a thread (or a process) has started the job: how
# long a start takes depends on the machine's load, so a test tries these in turn until an
# attempt started in time. An attempt whose timeout came first ended FAILED with JobTimeout
# without running its function, which the test checks too; then it tries the next one.
START_TIMEOUTS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)


def start_timeouts() -> Iterator[float]:
    """START_TIMEOUTS in turn, for a loop that breaks once an attempt started in time; the
    test fails if the loop asks for more."""
    yield from START_TIMEOUTS
    pytest.fail(f"no attempt started within its timeout, the last one {START_TIMEOUTS[-1]} s")


@contextmanager
def no_hang() -> Iterator[None]:
    """Turn a wait that never ends into a failure; never an assertion about speed."""
    with anyio.fail_after(HANG_GUARD):
        yield


async def until_blocked(task: asyncio.Task[Any]) -> None:
    """Let *task* run until every task waits on something; fail if it finished instead."""
    with no_hang():
        await anyio.wait_all_tasks_blocked()
    assert not task.done(), f"{task!r} was expected to block, but it finished"


async def all_blocked() -> None:
    """Let everything that can run, run: return once every other task waits on something."""
    with no_hang():
        await anyio.wait_all_tasks_blocked()


async def wait_in_thread(event: threading.Event) -> None:
    """Wait for a threading.Event without blocking the loop; fail after HANG_GUARD.

    Cancellable: a cancelled wait leaves its helper thread to end on its own (at the latest
    after HANG_GUARD), so that a test can wait for the first of several things.
    """
    woke = await anyio.to_thread.run_sync(event.wait, HANG_GUARD, abandon_on_cancel=True)
    assert woke, "timed out waiting for an event"


def state(job: aw.Job[Any]) -> aw.JobState:
    """The state now (a call, so that mypy does not narrow it across the runtime's steps)."""
    return job.state


def state_of(jobs: list[aw.Job[Any]]) -> list[aw.JobState]:
    return [job.state for job in jobs]


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


class Failing:
    """A job body that fails every time and says when it has (for waits on a retry)."""

    def __init__(self) -> None:
        self.failed = asyncio.Event()

    async def run(self, message: str = "boom") -> None:
        self.failed.set()
        raise Boom(message)


async def loop_module() -> str:
    """The module of the running loop's class: ``asyncio...`` or ``uvloop``."""
    return type(asyncio.get_running_loop()).__module__


async def double(x: int) -> int:
    return 2 * x


async def fail(message: str = "boom") -> None:
    raise Boom(message)


async def forever() -> None:
    """Waits for an event nobody sets: only a cancellation or a timeout ends it."""
    await asyncio.Event().wait()


class Boom(Exception):
    """A job's own failure."""
