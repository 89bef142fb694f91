"""The job queue: one deque per priority level, a heap of the levels in use, FIFO in a level.

Finding the next job costs a look at the top of a small heap, so with the usual handful of
levels it is a few operations, and with thousands of distinct priorities (deadlines,
timestamps) it stays O(log levels): a level is dropped from the heap as soon as it is found
empty, so levels never pile up.

A job cancelled while queued is not searched for: it stays where it is as a tombstone (no
longer PENDING) that :meth:`JobQueue.pop` skips, and the queue sweeps tombstones out when
they outnumber the live jobs. The queue owns the counts, so ``pending`` is always exact.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any, Final

from ._units import Job, JobState

__all__ = ["JobQueue"]

_PENDING: Final = JobState.PENDING

# Tombstones tolerated before a sweep (and only while they outnumber the live jobs), so
# that a sweep's cost is spread over at least as many cancels.
_SWEEP_AT: Final = 1024


class JobQueue:
    """Highest priority first, first in first out within one priority."""

    __slots__ = ("_heap", "_levels", "_tombstones", "pending")

    def __init__(self) -> None:
        self._levels: dict[int, deque[Job[Any]]] = {}
        self._heap: list[int] = []  # the negated priorities of the levels in _levels
        self._tombstones = 0
        self.pending = 0  # live (PENDING) jobs in the queue

    def push(self, job: Job[Any]) -> None:
        """Queue *job* behind the jobs of its priority."""
        level = self._levels.get(job.priority)
        if level is None:
            level = self._add_level(job.priority)
        level.append(job)
        self.pending += 1

    def push_front(self, job: Job[Any]) -> None:
        """Queue *job* ahead of the jobs of its priority (a retry whose backoff is over)."""
        level = self._levels.get(job.priority)
        if level is None:
            level = self._add_level(job.priority)
        level.appendleft(job)
        self.pending += 1

    def pop(self) -> Job[Any] | None:
        """The next PENDING job, or None; tombstones met on the way are dropped."""
        heap = self._heap
        while heap:
            level = self._levels[-heap[0]]
            while level:
                job = level.popleft()
                if job._state is _PENDING:
                    self.pending -= 1
                    return job
                self._tombstones -= 1
            del self._levels[-heapq.heappop(heap)]
        return None

    def discard(self, job: Job[Any]) -> None:
        """*job*, still in the queue, is about to leave PENDING: count it as a tombstone."""
        self.pending -= 1
        self._tombstones += 1
        if self._tombstones > _SWEEP_AT and self._tombstones > self.pending:
            self._sweep(job)

    def drain(self) -> list[Job[Any]]:
        """Remove every live job and return them in pop order."""
        jobs = []
        while (job := self.pop()) is not None:
            jobs.append(job)
        self._levels.clear()
        self._heap.clear()
        self._tombstones = 0
        return jobs

    def __len__(self) -> int:
        return self.pending

    def _add_level(self, priority: int) -> deque[Job[Any]]:
        level: deque[Job[Any]] = deque()
        self._levels[priority] = level
        heapq.heappush(self._heap, -priority)
        return level

    def _sweep(self, leaving: Job[Any]) -> None:
        for priority, level in list(self._levels.items()):
            live = [job for job in level if job._state is _PENDING and job is not leaving]
            if live:
                level.clear()
                level.extend(live)
            else:
                del self._levels[priority]
        # In place: the runtime's workers hold this list and the dict (their pop is inlined).
        self._heap[:] = [-priority for priority in self._levels]
        heapq.heapify(self._heap)
        self._tombstones = 0
