"""How a unit runs: natively on the loop, in a worker thread, or in a worker process.

Coroutine units are awaited inline by the runtime's workers (see ``_runtime``); this module
holds the two hops off the loop and the checks made at submit time for them.
"""

from __future__ import annotations

import functools
import inspect
import pickle
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_process
import anyio.to_thread
from anyio import BrokenWorkerProcess

from ._exceptions import WorkerCrashed
from ._units import Job, Kind

__all__ = ["check_picklable", "default_kind", "run_in_process", "run_in_thread"]

if TYPE_CHECKING:
    from anyio import CapacityLimiter

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
    """Raise TypeError naming the first thing a process job could not send to its worker."""
    _dumps(fn, f"the function {fn!r}")
    for index, arg in enumerate(args):
        _dumps(arg, f"positional argument {index} ({arg!r})")
    for key, value in (kwargs or {}).items():
        _dumps(value, f"keyword argument {key!r} ({value!r})")


def _dumps(obj: object, what: str) -> None:
    try:
        pickle.dumps(obj)
    except Exception as exc:
        raise TypeError(
            f'kind="process" needs everything it sends to be picklable, and {what} is not: {exc}'
        ) from exc


def _run_in_thread(job: Job[Any]) -> Any:
    if job._stop is not None:  # stopped while it waited for a free thread
        raise job._stop
    if job.kwargs:
        return job.fn(*job.args, **job.kwargs)
    return job.fn(*job.args)


async def run_in_thread(job: Job[Any], limiter: CapacityLimiter) -> Any:
    """Run a plain function in a worker thread; the job's context (current_job) goes along.

    Threads cannot be interrupted, so cancellation is cooperative (``check_cancelled()``).
    If the awaiting worker itself is cancelled (the last phase of shutdown), the thread is
    abandoned rather than waited for: a thread that never checks cannot hang the runtime.
    """
    return await anyio.to_thread.run_sync(
        _run_in_thread, job, limiter=limiter, abandon_on_cancel=True
    )


def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any] | None) -> Any:
    return fn(*args, **kwargs) if kwargs else fn(*args)


async def run_in_process(job: Job[Any], limiter: CapacityLimiter) -> Any:
    """Run a function in a worker process; cancelling the awaiting scope kills the process."""
    try:
        return await anyio.to_process.run_sync(
            _call, job.fn, job.args, job.kwargs, cancellable=True, limiter=limiter
        )
    except BrokenWorkerProcess as exc:
        raise WorkerCrashed(f"the worker process running job {job.name!r} died") from exc
