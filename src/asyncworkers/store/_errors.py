"""The store's exceptions, under the library's one root ``AsyncworkersError``."""

from __future__ import annotations

from .._core._exceptions import AsyncworkersError

__all__ = [
    "JobDead",
    "JobWouldDeadlock",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "TaskExited",
]


class StoreError(AsyncworkersError):
    """Something went wrong in a durable job store."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or opened; the message names the path or host:port.

    ``transient`` is True when trying again later may work (a server that refuses or drops
    connections), False for a mistake that waiting does not fix (a missing folder, a file
    that is not a database). ``asyncworkers worker`` keeps trying on a transient one.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class StoreFull(StoreError):
    """A write failed because the disk holding the database is full. Reads still work: a
    store opened with ``read_only=True`` (what ``asyncworkers status`` does) needs no room."""


class JobWouldDeadlock(StoreError):
    """``result()`` called in a job for another job that this worker can never run: every
    slot that could run it is held by a job waiting like this one (``concurrency=1``: the
    caller's own). Enqueue the follow-up work instead of waiting for it in a job, or give
    the worker (or the awaited job's queue) more concurrency."""


class JobDead(StoreError):
    """``result()`` of a job that ended in the dead letters; the message carries its error."""

    def __init__(self, id: int, error: str | None) -> None:
        super().__init__(f"job {id} is dead: {error or 'no error recorded'}")
        self.id = id
        self.error = error


class TaskExited(StoreError):
    """A task raised ``SystemExit`` or ``KeyboardInterrupt``: a failure of its job (retried
    like any other), not the end of the worker that runs it."""

    def __init__(self, task: str, exc: BaseException) -> None:
        super().__init__(f"task {task!r} raised {type(exc).__name__}({exc})")
        self.task = task
