"""worker-dispatcher's API on asyncworkers: switch by changing one import.

.. code-block:: python

    from asyncworkers.compat import worker_dispatcher  # was: import worker_dispatcher

    results = worker_dispatcher.start({"task": {"list": 10, "function": each_task}})
    print(worker_dispatcher.get_tps())

``start(config)`` takes worker-dispatcher's configuration dict (the same keys and defaults,
merged the same way) and runs it through :func:`asyncworkers.dispatch`; ``get_results()``,
``get_logs()``, ``get_result_info()`` and ``get_tps()`` return what worker-dispatcher's do,
in the same shapes. Where the behaviour differs, it is on purpose:

- ``results`` and ``logs`` come in task order (worker-dispatcher: in completion order).
- A task function may also be a coroutine function (it runs on the event loop).
- An exception from the task function or ``on_done`` becomes that task's result and counts
  as failed, where worker-dispatcher ends the program (``exit()``).
- ``runtime`` stops *starting* tasks after that many seconds in both modes; tasks in flight
  are awaited and their results kept; tasks never started are counted as undispatched
  (worker-dispatcher's fixed-worker mode submits them all and calls the unfinished ones
  uncompleted, dropping the results of those still running).
- ``worker.parallel_processing`` runs the tasks in worker processes, ``worker.number`` of
  them at a time, like ``use_processing`` (no threads inside the processes).
- Frequency mode starts ``number`` tasks every ``interval`` seconds from a schedule fixed
  at the start (open model), so a slow dispatch round never shifts the next ones.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import datetime
import functools
import inspect
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncworkers as aw

from ._wd_tps import result_is_success, tps_report

__all__ = [
    "default_config",
    "get_last_config",
    "get_logs",
    "get_result_info",
    "get_results",
    "get_tps",
    "print",
    "result_is_success",
    "start",
]


def task_function_sample(
    id: int,
    config: Any = None,
    task: Any = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, int]:
    """worker-dispatcher's default task function."""
    if id == 1:
        print("Runing sample task function, please customize yours according to the actual usage.")
    return {"taskId": id}


# worker-dispatcher's defaults, key for key.
default_config: dict[str, Any] = {
    "debug": False,
    "task": {
        "list": [],
        "function": task_function_sample,
        "config": {},
        "callback": {"on_done": False, "on_all_done": False},
    },
    "worker": {
        "number": multiprocessing.cpu_count(),
        "frequency_mode": {
            "enabled": False,
            "interval": 1,
            "accumulated_workers": 0,
            "max_workers": None,
        },
        "use_processing": False,
        "parallel_processing": {"enabled": False, "use_queue": False},
    },
    "runtime": None,
    "verbose": True,
}

# worker-dispatcher caps the workers of frequency mode at this many.
_MAX_FREQUENCY_WORKERS = 32766

# The state of the last start(), as module globals, as worker-dispatcher keeps it.
_last_config: dict[str, Any] = {}
_results: list[Any] = []
_logs: list[dict[str, Any]] = []
_result_info: dict[str, float] = {}


def print(*args: Any, **kwargs: Any) -> None:
    """``print`` that flushes by default, for output redirected to a file."""
    kwargs.setdefault("flush", True)
    builtins.print(*args, **kwargs)


def get_last_config() -> dict[str, Any]:
    return _last_config


def get_results() -> list[Any]:
    """The results of the completed tasks of the last ``start()``, in task order."""
    return _results


def get_logs() -> list[dict[str, Any]]:
    """One dict per completed task: task_id, started_at, ended_at, duration, result, metadata."""
    return _logs


def get_result_info() -> dict[str, float]:
    """The last dispatch's own ``started_at``, ``ended_at`` (unix times) and ``duration``."""
    return _result_info


def get_duration() -> float | None:
    return _result_info.get("duration")


def get_tps(
    logs: list[dict[str, Any]] | None = None,
    display_intervals: bool = False,
    interval: float = 0,
    reverse_interval: bool = False,
    use_processing: bool = False,
    verbose: bool = False,
    debug: bool = False,
) -> dict[str, Any] | bool:
    """worker-dispatcher's TPS report of *logs* (default: the last start()'s logs).

    ``{"tps", "started_at", "ended_at", "duration", "metrics", "count", "peak"}`` (and
    ``"intervals"`` with *display_intervals*), the same figures as worker-dispatcher's.
    *use_processing* is accepted and not needed: the peak search is fast in one process.
    Returns False when *logs* is not a list, as worker-dispatcher does.
    """
    del use_processing  # a speed option of worker-dispatcher's, without effect here
    verbose = verbose or debug
    logs = logs if logs else _logs
    if not isinstance(logs, list):
        return False
    say: Callable[[str], None] = print if verbose else _quiet
    return tps_report(
        logs,
        display_intervals=display_intervals,
        interval=interval,
        reverse_interval=reverse_interval,
        say=say,
        debug=debug,
    )


def _quiet(text: str) -> None:
    pass


def start(user_config: dict[str, Any]) -> list[Any] | bool:
    """Run the tasks of a worker-dispatcher configuration; return their results.

    Returns False (doing nothing) inside a worker process that re-imported the main module,
    as worker-dispatcher does, so that a script without a ``__main__`` guard cannot recurse.
    """
    global _last_config, _results, _logs
    _results, _logs = [], []
    config = _last_config = _merge(default_config, user_config)
    worker = config["worker"]
    processes = bool(worker["use_processing"] or worker["parallel_processing"]["enabled"])
    if processes and _in_worker_process():
        return False
    if config["debug"]:
        print("Configuration Dictionary:")
        print(config)
    task = config["task"]
    tasks = task["list"]
    if isinstance(tasks, int) and not isinstance(tasks, bool):
        tasks = [{} for _ in range(tasks)]  # worker-dispatcher's task value for a count
    options = _dispatch_options(config, len(tasks) if isinstance(tasks, list) else 0)
    if processes:
        options["kind"] = "process"
    verbose = bool(config["verbose"])
    if verbose:
        _print_plan(config, options, processes, tasks)
    logs: dict[int, dict[str, Any]] = {}
    report = _blocking(
        aw.dispatch_sync,
        _by_keywords(task["function"]),
        tasks,
        config=task["config"],
        on_done=functools.partial(_on_done, task["callback"]["on_done"], logs),
        **options,
    )
    _collect(report, logs, task["callback"]["on_all_done"], task["config"])
    if verbose:
        _print_outcome(report)
    return _results


def _blocking(run: Callable[..., aw.Report], *args: Any, **kwargs: Any) -> aw.Report:
    """Call *run*; from a thread whose event loop is running (a notebook, async code),
    call it in a helper thread and block until it returns, as worker-dispatcher blocks."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run(*args, **kwargs)
    with ThreadPoolExecutor(1, thread_name_prefix="worker-dispatcher") as pool:
        return pool.submit(run, *args, **kwargs).result()


# -- configuration -------------------------------------------------------------------------


def _merge(defaults: Mapping[str, Any], user: Mapping[str, Any]) -> dict[str, Any]:
    """worker-dispatcher's merge: the user's dicts merged into the defaults, key by key."""
    merged = copy.deepcopy(dict(defaults))
    for key, value in user.items():
        if isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _dispatch_options(config: Mapping[str, Any], count: int) -> dict[str, Any]:
    """workers, the schedule of frequency mode, and runtime, as dispatch() options."""
    worker = config["worker"]
    number = worker["number"] if isinstance(worker["number"], int) else 1
    options: dict[str, Any] = {"workers": number}
    frequency = worker["frequency_mode"]
    if frequency["enabled"]:
        interval = float(frequency["interval"])
        accumulated = int(frequency["accumulated_workers"] or 0)
        ceiling = frequency["max_workers"]
        cap = ceiling if isinstance(ceiling, int) and ceiling else count
        options["workers"] = max(1, min(cap, _MAX_FREQUENCY_WORKERS))
        options["start_times"] = _frequency_offsets(count, number, interval, accumulated)
    if config["runtime"]:
        options["duration"] = float(config["runtime"])
    return options


def _frequency_offsets(count: int, number: int, interval: float, accumulated: int) -> list[float]:
    """``number`` tasks at 0 s, ``number + accumulated`` at ``interval``, and so on.

    A batch never has fewer than one task (worker-dispatcher then waits an interval after
    each task).
    """
    offsets: list[float] = []
    batch = 0
    while len(offsets) < count:
        size = max(1, number + batch * accumulated)
        offsets.extend([batch * interval] * min(size, count - len(offsets)))
        batch += 1
    return offsets


def _in_worker_process() -> bool:
    """True in a worker process that is importing the parent's main module."""
    main = sys.modules.get("__main__")
    return (
        multiprocessing.parent_process() is not None
        or main is None
        or getattr(main, "__name__", "") == "__mp_main__"
    )


# -- running -------------------------------------------------------------------------------


def _by_keywords(function: Any) -> Callable[..., Any]:
    """The task function, called with keywords as worker-dispatcher calls it."""
    if not callable(function):
        raise TypeError(f"task.function must be callable, got {function!r}")
    if _is_async(function):

        async def call_async(id: int, config: Any, task: Any, metadata: dict[str, Any]) -> Any:
            return await function(config=config, id=id, task=task, metadata=metadata)

        return call_async
    return functools.partial(_call_by_keywords, function)


def _is_async(function: Any) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004
    )


def _call_by_keywords(
    function: Callable[..., Any],
    id: int,
    config: Any,
    task: Any,
    metadata: dict[str, Any],
) -> Any:
    """Module level, so that a worker process can unpickle it with the function."""
    return function(config=config, id=id, task=task, metadata=metadata)


def _log_dict(log: aw.TaskLog) -> dict[str, Any]:
    return {
        "task_id": log.task_id,
        "started_at": log.started_at,
        "ended_at": log.ended_at,
        "duration": log.duration,
        "result": log.result,
        "metadata": log.metadata,
    }


def _on_done(
    callback: Any,
    logs: dict[int, dict[str, Any]],
    id: int,
    config: Any,
    result: Any,
    log: aw.TaskLog,
) -> Any:
    """Keep the task's dict log; call the user's on_done with it, as worker-dispatcher does."""
    entry = logs[id] = _log_dict(log)
    if callable(callback):
        result = callback(config=config, id=id, result=result, log=entry)
        entry["result"] = result
    return result


def _collect(
    report: aw.Report, logs: dict[int, dict[str, Any]], on_all_done: Any, config: Any
) -> None:
    """Fill the module's results, logs and result info from the report."""
    global _results, _logs
    done = []
    for log in report.logs:
        entry = logs.get(log.task_id)
        if entry is not None:  # completed: on_done saw it
            entry["result"] = log.result  # the final one, an exception from on_done too
            done.append(entry)
    if callable(on_all_done):
        for entry in done:
            entry["result"] = on_all_done(
                config=config, id=entry["task_id"], result=entry["result"], log=entry
            )
    _logs = done
    _results = [entry["result"] for entry in done]
    _result_info.update(
        started_at=report.started_at, ended_at=report.ended_at, duration=report.duration
    )


# -- what verbose prints -------------------------------------------------------------------


def _print_plan(
    config: Mapping[str, Any], options: Mapping[str, Any], processes: bool, tasks: Any
) -> None:
    runtime = options.get("duration")
    frequency = config["worker"]["frequency_mode"]
    print("\nWorker Dispatcher Configuration:")
    print(f"- Local CPU core: {os.cpu_count()}")
    print(f"- Tasks Count: {len(tasks) if isinstance(tasks, list) else 0}")
    print(f"- Runtime: {f'{runtime} sec' if runtime else 'Unlimited'}")
    if frequency["enabled"]:
        print("- Dispatch Mode: Frequency Mode")
        print(f"  ├─ Interval Seconds: {float(frequency['interval'])}")
        print(f"  └─ Accumulated Workers: {frequency['accumulated_workers'] or 0}")
    else:
        print("- Dispatch Mode: Fixed Workers (Default)")
    print("- Concurrency Info:")
    print(f"  ├─ Execution Type: {'Processing' if processes else 'Threading'} (asyncworkers)")
    print(f"  └─ Total Concurrency: {options['workers']} Active Worker(s)")
    print(f"\n--- Start to dispatch workers at {_iso(time.time())} ---\n")


def _print_outcome(report: aw.Report) -> None:
    print(f"\n--- End of worker dispatch at {_iso(report.ended_at)}---\n")
    print(f"Spend Time: {report.duration:.6f} sec")
    print(f"Completed Tasks Count: {report.completed}")
    print(f"Uncompleted Tasks Count: {report.uncompleted}")
    print(f"Undispatched Tasks Count: {report.undispatched}")


def _iso(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix).astimezone().isoformat()
