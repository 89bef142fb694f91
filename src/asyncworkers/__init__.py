"""asyncworkers: an asyncio-native task runtime.

A priority queue and supervised worker coroutines run coroutine jobs natively, blocking
functions in threads and CPU work in processes; one CancellationToken reaches every job that
carries it, and every completion is counted in :class:`Metrics`.
"""

from __future__ import annotations

from functools import partial
from importlib import import_module
from typing import TYPE_CHECKING

from ._lazy import lazy_names
from ._version import __version__ as __version__
from .dispatch import dispatch, dispatch_sync

if TYPE_CHECKING:  # what the names below are; at run time each loads on first use
    from . import ops as ops
    from . import store as store
    from ._core._cancel import CancellationToken, check_cancelled
    from ._core._exceptions import (
        AsyncworkersError,
        JobCancelled,
        JobTimeout,
        QueueFull,
        RuntimeClosed,
        WorkerCrashed,
    )
    from ._core._metrics import Latency, Metrics
    from ._core._options import JobOptions
    from ._core._retry import Retry
    from ._core._runtime import Runtime
    from ._core._signals import run
    from ._core._sync import SyncRuntime
    from ._core._units import Job, JobState, Kind, Priority, WorkUnit, current_job
    from .dispatch import Report, TaskLog, Throughput

__all__ = (
    "AsyncworkersError",
    "CancellationToken",
    "Job",
    "JobCancelled",
    "JobOptions",
    "JobState",
    "JobTimeout",
    "Kind",
    "Latency",
    "Metrics",
    "Priority",
    "QueueFull",
    "Report",
    "Retry",
    "Runtime",
    "RuntimeClosed",
    "SyncRuntime",
    "TaskLog",
    "Throughput",
    "WorkUnit",
    "WorkerCrashed",
    "check_cancelled",
    "current_job",
    "dispatch",
    "dispatch_sync",
    "run",
)

# Where each name lives. ``import asyncworkers`` imports none of these modules: asyncio and
# anyio's task machinery alone cost twice what ``import anyio`` does, and the CLI's --help
# or a worker process that only unpickles a function needs none of it. A name's module is
# imported the first time the name is used (tests/test_imports.py guards this graph).
_HOMES: dict[str, str] = {
    "AsyncworkersError": "._core._exceptions",
    "CancellationToken": "._core._cancel",
    "Job": "._core._units",
    "JobCancelled": "._core._exceptions",
    "JobOptions": "._core._options",
    "JobState": "._core._units",
    "JobTimeout": "._core._exceptions",
    "Kind": "._core._units",
    "Latency": "._core._metrics",
    "Metrics": "._core._metrics",
    "Priority": "._core._units",
    "QueueFull": "._core._exceptions",
    "Report": ".dispatch",
    "Retry": "._core._retry",
    "Runtime": "._core._runtime",
    "RuntimeClosed": "._core._exceptions",
    "SyncRuntime": "._core._sync",
    "TaskLog": ".dispatch",
    "Throughput": ".dispatch",
    "WorkUnit": "._core._units",
    "WorkerCrashed": "._core._exceptions",
    "check_cancelled": "._core._cancel",
    "current_job": "._core._units",
    "run": "._core._signals",
}
# The durable job store as ``aw.store``, and health, metrics, dashboard and watchdog as
# ``aw.ops``: subpackages, imported on first use too.
_SUBPACKAGES: frozenset[str] = frozenset(("ops", "store"))


if not TYPE_CHECKING:  # hidden from type checkers, so that a misspelt name still fails there
    __getattr__, __dir__ = lazy_names(
        __name__,
        _HOMES,
        loaders={name: partial(import_module, f".{name}", __name__) for name in _SUBPACKAGES},
    )
