"""Counters and latency percentiles, and the frozen snapshot users read them from."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Latency", "Metrics", "Recorder"]

# Percentiles cover the most recent samples: a bounded window keeps recording O(1) and
# memory flat however long the runtime lives.
WINDOW = 10_000
TRIM_AT = 2 * WINDOW


@dataclass(frozen=True, slots=True)
class Latency:
    """Seconds, over the most recent jobs (10,000 to 20,000 of them); ``max`` is over every
    job."""

    p50: float = 0.0
    p90: float = 0.0
    p99: float = 0.0
    max: float = 0.0
    count: int = 0


@dataclass(frozen=True, slots=True)
class Metrics:
    """A snapshot of a runtime's counters; take a new one with ``Runtime.metrics()``.

    ``wait_time`` runs from queueing to start (for a retry: from the retry's requeue), and
    ``run_time`` from start to finish of the last attempt.
    """

    submitted: int
    completed: int
    failed: int
    cancelled: int
    retried: int
    running: int
    pending: int
    workers: int
    wait_time: Latency
    run_time: Latency
    worker_errors: int = 0
    #: Worker coroutines alive now: they start as jobs come, up to ``workers``, and idle
    #: ones above a small floor end after a while, so this follows the jobs in flight.
    worker_tasks: int = 0

    @property
    def finished(self) -> int:
        return self.completed + self.failed + self.cancelled


class Series:
    """Recent samples in a plain list (appending is the cheapest record there is), trimmed
    to the last ``WINDOW`` once it doubles, plus the maximum of them all.

    A snapshot sorts only what came since the last one: the sorted copy of the samples
    before them is kept, and sorting it with the new ones appended is a merge of two runs
    for Python's sort, linear rather than ``n log n`` (a trim starts the copy afresh).
    """

    __slots__ = ("_maximum", "_sorted", "_sorted_upto", "_total_trimmed", "samples")

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._maximum = 0.0
        self._total_trimmed = 0
        self._sorted: list[float] = []  # samples[:_sorted_upto], in order
        self._sorted_upto = 0

    def trim(self) -> None:
        excess = len(self.samples) - WINDOW
        if excess > 0:
            self._maximum = max(self._maximum, max(self.samples[:excess]))
            self._total_trimmed += excess
            del self.samples[:excess]
            self._sorted, self._sorted_upto = [], 0

    def snapshot(self) -> Latency:
        if len(self.samples) >= TRIM_AT:
            self.trim()
        samples = self.samples
        if not samples:
            return Latency()
        ordered = self._sorted
        if self._sorted_upto < len(samples):
            ordered.extend(samples[self._sorted_upto :])
            ordered.sort()
            self._sorted_upto = len(samples)
        return Latency(
            p50=_nearest_rank(ordered, 0.50),
            p90=_nearest_rank(ordered, 0.90),
            p99=_nearest_rank(ordered, 0.99),
            max=max(self._maximum, ordered[-1]),
            count=self._total_trimmed + len(ordered),
        )


def _nearest_rank(ordered: list[float], q: float) -> float:
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class Recorder:
    """The runtime's mutable counters. Plain int fields: an increment is one attribute write."""

    __slots__ = (
        "cancelled",
        "completed",
        "failed",
        "retried",
        "run_time",
        "submitted",
        "wait_time",
        "worker_errors",
    )

    def __init__(self) -> None:
        self.submitted = 0
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.retried = 0
        self.worker_errors = 0
        self.wait_time = Series()
        self.run_time = Series()

    def trim_if_due(self) -> None:
        """Trim both series once one has reached twice the window; the workers call it now
        and then (every so many jobs, and when idle), so that recording stays an append."""
        if len(self.run_time.samples) >= TRIM_AT or len(self.wait_time.samples) >= TRIM_AT:
            self.wait_time.trim()
            self.run_time.trim()

    def snapshot(
        self, *, running: int, pending: int, workers: int, worker_tasks: int = 0
    ) -> Metrics:
        return Metrics(
            submitted=self.submitted,
            completed=self.completed,
            failed=self.failed,
            cancelled=self.cancelled,
            retried=self.retried,
            running=running,
            pending=pending,
            workers=workers,
            wait_time=self.wait_time.snapshot(),
            run_time=self.run_time.snapshot(),
            worker_errors=self.worker_errors,
            worker_tasks=worker_tasks,
        )
