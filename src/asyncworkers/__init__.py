"""asyncworkers: an asyncio-native task runtime.

A priority queue and supervised worker coroutines run coroutine jobs natively, blocking
functions in threads and CPU work in processes; one CancellationToken reaches every job that
carries it, and every completion is counted in :class:`Metrics`.
"""

from __future__ import annotations

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
from ._version import __version__ as __version__
from .dispatch import Report, TaskLog, Throughput, dispatch, dispatch_sync

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

# Imported last, since they use the names above: the durable job store as ``aw.store``, and
# health, metrics, dashboard and watchdog as ``aw.ops`` (light: aiohttp, prometheus_client
# and opentelemetry are imported when an endpoint starts).
from . import ops as ops
from . import store as store
