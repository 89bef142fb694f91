"""How a unit runs: natively on the loop, in a worker thread, or in a worker process.

Coroutine units are awaited inline by the runtime's workers (see ``_runtime``); this module
holds the two hops off the loop and the checks made at submit time for them.
"""

from __future__ import annotations

import functools
import inspect
import logging
import pickle
import reprlib
import traceback
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.to_process
import anyio.to_thread
from anyio import BrokenWorkerProcess

from ._exceptions import JobCancelled, WorkerCrashed
from ._units import Job, Kind

__all__ = ["check_picklable", "default_kind", "run_in_process", "run_in_thread"]

if TYPE_CHECKING:
    from anyio import CapacityLimiter

logger = logging.getLogger("asyncworkers")

KINDS: frozenset[str] = frozenset(("async", "thread", "process"))


@functools.lru_cache(maxsize=1024)
def _is_coroutine_function(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an instance with an async __call__
    )


def default_kind(fn: Callable[..., Any]) -> Kind:
    """``"async"`` for coroutine functions, ``"thread"`` for every other callable."""
    try:
        is_async = _is_coroutine_function(fn)
    except TypeError:  # unhashable callable: no caching
        is_async = _is_coroutine_function.__wrapped__(fn)
    return "async" if is_async else "thread"


def check_picklable(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any] | None
) -> None:
    """Raise TypeError naming the first thing a process job could not send to its worker.

    Checked at submit time, so that the error comes from the call that made it. A coroutine
    function is refused too: the worker process would get a coroutine it cannot run.
    """
    if default_kind(fn) == "async":
        raise TypeError(
            f'kind="process" runs plain functions in a worker process; {fn!r} is a '
            'coroutine function (run it with kind="async", the default)'
        )
    _dumps(fn, f"the function {fn!r}")
    for index, arg in enumerate(args):
        _dumps(arg, f"positional argument {index} ({reprlib.repr(arg)})")
    for key, value in (kwargs or {}).items():
        _dumps(value, f"keyword argument {key!r} ({reprlib.repr(value)})")


def _dumps(obj: object, what: str) -> None:
    try:
        pickle.dumps(obj)
    except Exception as exc:
        raise TypeError(
            f'kind="process" needs everything it sends to be picklable, and {what} is not: {exc}'
        ) from exc


class _Held(anyio.CapacityLimiter):
    """The limiter handed to ``anyio.to_thread.run_sync`` for a job that holds its token.

    A thread job takes its token from the runtime's own ``CapacityLimiter`` before the hop
    (see :func:`run_in_thread`), so the ``async with limiter`` that anyio wraps around the
    call has nothing left to do: this one enters and exits at once. That saves anyio's
    acquire checkpoint (a cancel scope and a trip round the event loop) on every job, and
    lets a job that waits for a free thread be cancelled like any other waiting job.
    """

    __slots__ = ()

    def __new__(cls) -> _Held:
        return object.__new__(cls)

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        return None


_HELD: Final = _Held()


def _run_in_thread(job: Job[Any]) -> Any:
    if job._stop is not None:  # stopped on its way to the thread
        raise job._stop
    if job.kwargs:
        return job.fn(*job.args, **job.kwargs)
    return job.fn(*job.args)


async def run_in_thread(job: Job[Any], limiter: CapacityLimiter) -> Any:
    """Run a plain function in a worker thread; the job's context (current_job) goes along.

    The job borrows a token of *limiter* (the runtime's ``threads=``) for as long as its
    function runs. When none is free it waits, FIFO, under a cancel scope that is the job's
    hook, so that cancelling it (or its timeout) takes it out of the line at once: a job
    that waited for a thread and was cancelled never starts.

    Threads cannot be interrupted, so a running job stops cooperatively, at its next
    ``check_cancelled()``. If the awaiting worker itself is cancelled (the last phase of
    shutdown), the thread is abandoned rather than waited for: a thread that never checks
    cannot hang the runtime.
    """
    try:
        limiter.acquire_on_behalf_of_nowait(job)
    except anyio.WouldBlock:
        await _wait_for_thread(job, limiter)
    try:
        return await anyio.to_thread.run_sync(
            _run_in_thread, job, limiter=_HELD, abandon_on_cancel=True
        )
    except Exception:
        raise  # the job's own outcome
    except BaseException:  # the worker is cancelled; the thread goes on alone
        if job.finished_at is None:  # by a scope outside the runtime: say so here
            logger.warning(
                "asyncworkers: abandoning thread job %s (id %d): its worker was cancelled "
                "while the thread ran (a thread stops only at check_cancelled())",
                job.name,
                job.id,
            )
        raise
    finally:
        limiter.release_on_behalf_of(job)


async def _wait_for_thread(job: Job[Any], limiter: CapacityLimiter) -> None:
    acquired = False
    with anyio.CancelScope() as scope:
        job._hook = scope
        try:
            await limiter.acquire_on_behalf_of(job)
            acquired = True
        finally:
            job._hook = None
    if not acquired:  # the scope was cancelled by a stop request, which says why
        raise job._stop or JobCancelled("cancelled while waiting for a thread")


def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any] | None) -> Any:
    """What runs in the worker process: the call, with the child's traceback kept as a note
    on the exception, since the traceback itself does not survive pickling."""
    try:
        return fn(*args, **kwargs) if kwargs else fn(*args)
    except Exception as exc:
        exc.add_note(
            "".join(["\nTraceback in the worker process:\n", *traceback.format_exception(exc)])
        )
        raise


async def run_in_process(job: Job[Any], limiter: CapacityLimiter) -> Any:
    """Run a function in a worker process; cancelling the awaiting scope kills the process.

    A process that dies under the job (``os._exit()``, a signal, out of memory) fails only
    this job, with :class:`WorkerCrashed`; anyio drops it from its pool and starts a fresh
    one for the next job.
    """
    try:
        return await anyio.to_process.run_sync(
            _call, job.fn, job.args, job.kwargs, cancellable=True, limiter=limiter
        )
    except BrokenWorkerProcess as exc:
        raise WorkerCrashed(
            f"the worker process running job {job.name!r} died (os._exit(), a signal or "
            "out of memory); the next job gets a new process"
        ) from exc
