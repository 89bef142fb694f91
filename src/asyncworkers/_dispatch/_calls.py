"""Timing one task wherever it runs: on the loop, in a thread, in a process.

The runtime runs a wrapper instead of the user's function. The wrapper makes the metadata
dict, reads the clock around the call and turns an ordinary exception into the task's result
(a failed task, not a failed job), so that every kind of task comes back the same way: an
:data:`Outcome`. A BaseException other than cancellation (KeyboardInterrupt, SystemExit) is
sent back marked as fatal instead of escaping into the runtime's worker: the dispatcher stops
and raises it from ``dispatch()``. Cancellation always propagates.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from time import time as _now
from typing import Any, Literal, NamedTuple

import asyncworkers as aw

__all__ = ["Outcome", "call_async", "call_sync", "resolve_kind"]

Kind = Literal["async", "thread", "process"]


class Outcome(NamedTuple):
    """What a wrapper returns: the task's own timing and result (unix times)."""

    started_at: float
    ended_at: float
    result: Any
    metadata: dict[str, Any]
    fatal: bool  # result is a BaseException that must stop the dispatch


def is_coroutine_callable(fn: Callable[..., Any]) -> bool:
    """True for coroutine functions and objects with an ``async def __call__``."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an instance with an async __call__
    )


def resolve_kind(function: Callable[..., Any], kind: object) -> Kind:
    """The kind a task runs as; TypeError/ValueError for a kind that cannot run *function*."""
    is_async = is_coroutine_callable(function)
    if kind is None:
        return "async" if is_async else "thread"
    if kind not in ("async", "thread", "process"):
        raise ValueError(f'kind must be None, "async", "thread" or "process", got {kind!r}')
    if kind == "async" and not is_async:
        raise TypeError(f'kind="async" needs a coroutine function, got {function!r}')
    if kind != "async" and is_async:
        raise TypeError(
            f"kind={kind!r} runs plain functions off the loop; {function!r} is a coroutine "
            'function (leave kind=None or use kind="async")'
        )
    return kind


async def call_async(function: Callable[..., Any], task_id: int, config: Any, task: Any) -> Outcome:
    """Await ``function(task_id, config, task, metadata)`` on the loop and time it."""
    metadata: dict[str, Any] = {}
    started = _now()
    fatal = False
    try:
        result = await function(task_id, config, task, metadata)
    except (asyncio.CancelledError, aw.JobCancelled):
        raise  # the job is being stopped: it ends CANCELLED, uncompleted
    except Exception as exc:
        result = exc
    except BaseException as exc:  # KeyboardInterrupt, SystemExit: stop everything
        result, fatal = exc, True
    return Outcome(started, _now(), result, metadata, fatal)


def call_sync(function: Callable[..., Any], task_id: int, config: Any, task: Any) -> Outcome:
    """Call ``function(task_id, config, task, metadata)`` in a thread or process; time it.

    Module level, so that a process worker can unpickle it.
    """
    metadata: dict[str, Any] = {}
    started = _now()
    fatal = False
    try:
        result = function(task_id, config, task, metadata)
    except aw.JobCancelled:
        raise  # check_cancelled() saw the job stopped: it ends CANCELLED, uncompleted
    except Exception as exc:
        result = exc
    except BaseException as exc:
        result, fatal = exc, True
    return Outcome(started, _now(), result, metadata, fatal)
