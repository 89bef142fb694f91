"""dispatch(): run a task list on a Runtime, closed or open model, and report TPS and peaks.

The implementation is in the private ``_dispatch`` package; this module is its public face.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal

from ._dispatch._schedule import LATE_AFTER
from ._lazy import lazy_names

if TYPE_CHECKING:
    from ._core._runtime import Runtime
    from ._dispatch._log import TaskLog, http_status, is_failure
    from ._dispatch._report import Report, Throughput

__all__ = [
    "LATE_AFTER",
    "Report",
    "TaskLog",
    "Throughput",
    "dispatch",
    "dispatch_sync",
    "http_status",
    "is_failure",
]


async def dispatch(
    function: Callable[..., Any],
    tasks: list[Any] | int,
    *,
    config: Any = None,
    workers: int = 8,
    rate: float | None = None,
    start_times: Iterable[float] | None = None,
    duration: float | None = None,
    kind: Literal["async", "thread", "process"] | None = None,
    on_done: Callable[..., Any] | None = None,
    on_all_done: Callable[..., Any] | None = None,
    progress: bool = False,
    runtime: Runtime | None = None,
    record: bool = True,
) -> Report:
    """Run ``function(id, config, task, metadata)`` once per task and report on it.

    :param function: called with the task's id (from 1), *config*, the task's value and a
        dict it may fill (kept as the log's ``metadata``). A coroutine function runs on the
        loop; a plain one in a thread, or in a worker process with ``kind="process"``.
        An exception it raises becomes the task's (failed) result; a KeyboardInterrupt or
        other BaseException stops the dispatch and is raised here.
    :param tasks: a list (each value is passed on) or an int (that many tasks, value None).
    :param workers: the most tasks in flight at once. Alone, the closed model: *workers*
        tasks always in flight, a new one starting as one ends.
    :param rate: tasks started per second (open model): task *i* is meant to start at
        ``i / rate`` seconds, whatever the completions; a task behind its time starts at
        once, without moving the times of the others. A task that waited for a free slot
        (*workers* tasks in flight at its time) or started more than 5 ms after its time
        counts in ``late_starts``.
    :param start_times: the open model's general form: one offset in seconds from the start
        per task, non-decreasing (a list, or any iterable, read as the dispatch goes; when
        it ends, the tasks left are undispatched). Not with *rate*.
    :param duration: stop starting tasks after this many seconds; the ones not started are
        counted as undispatched, the ones in flight are awaited and reported.
    :param kind: None (by the function), ``"async"``, ``"thread"`` or ``"process"``.
    :param on_done: ``on_done(id, config, result, log)`` after each task that completed
        (sync, on the loop, or async; the task holds its slot until it ends); its return
        value replaces the result (return *result* to keep it). An exception it raises
        becomes the result.
    :param on_all_done: the same, for each completed task in task order, once all are done.
    :param progress: show a live progress bar on stderr.
    :param runtime: run on this started Runtime instead of a new one (then *workers* still
        caps the tasks in flight, and the runtime's own workers bound them too).
    :param record: keep each task's log and result in the Report; with False only the
        counts and the timeline are kept (memory stays flat over long runs), and
        *on_all_done* is refused.
    :returns: a :class:`Report`. Cancelling the caller cancels the tasks in flight.
    """
    # Imported here, like the names below: ``import asyncworkers`` binds dispatch() at once
    # (a lazy name would lose to this module of the same name), and stays light.
    from ._dispatch._engine import Dispatcher
    from ._dispatch._options import make_plan

    plan = make_plan(
        function, tasks, config=config, workers=workers, rate=rate, start_times=start_times,
        duration=duration, kind=kind, on_done=on_done, on_all_done=on_all_done,
        progress=progress, runtime=runtime, record=record,
    )  # fmt: skip
    return await Dispatcher(plan).run()


def dispatch_sync(function: Callable[..., Any], tasks: list[Any] | int, **options: Any) -> Report:
    """:func:`dispatch` from sync code: runs it in a new event loop (uvloop when installed).

    Takes the same keyword options (except *runtime*, which belongs to a running loop).
    """
    if "runtime" in options and options["runtime"] is not None:
        raise ValueError("dispatch_sync() makes its own runtime: runtime= is for dispatch()")
    from ._core._signals import run

    return run(functools.partial(dispatch, function, tasks, **options))


# The report types, imported on first use (see dispatch()).
_HOMES: dict[str, str] = {
    "Report": "._dispatch._report",
    "Throughput": "._dispatch._report",
    "TaskLog": "._dispatch._log",
    "http_status": "._dispatch._log",
    "is_failure": "._dispatch._log",
}


if not TYPE_CHECKING:  # hidden from type checkers, so that a misspelt name still fails there
    __getattr__, __dir__ = lazy_names(__name__, _HOMES, anchor=__package__)
