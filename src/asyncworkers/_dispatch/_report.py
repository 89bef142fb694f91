"""The Report of a dispatch, the tally it is built from, and its TPS figures.

Completions are counted on a timeline of :data:`STEP`-second buckets (by when each task
ended), whether or not per-task logs are kept, so TPS, its intervals and its peak cost memory
in proportion to the run's length, never to its number of tasks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._log import TaskLog

__all__ = ["STEP", "Report", "Tally", "Throughput", "throughput"]

# The timeline's resolution, in seconds: TPS intervals and the peak window are multiples.
STEP = 0.1
# The default length of the peak window, in seconds.
PEAK_WINDOW = 1.0


@dataclass(frozen=True, slots=True)
class Throughput:
    """TPS figures of a dispatch: successful tasks per second, by when they ended.

    - ``average``: successful tasks over the whole dispatch's duration.
    - ``intervals``: the TPS of each consecutive ``interval``-second slice of the run,
      from its start (the last slice divided by its own, maybe shorter, length).
    - ``peak``: the highest TPS sustained over ``window`` seconds, from ``peak_started_at``
      to ``peak_ended_at`` (unix times). The window slides over the whole run in
      0.1-second steps; a run shorter than the window is one window, its own length.
    """

    average: float
    interval: float
    intervals: list[float]
    peak: float
    peak_started_at: float
    peak_ended_at: float
    window: float


class Tally:
    """Counts, logs and the timeline, filled as tasks end (on the loop's thread)."""

    __slots__ = (
        "cancelled",
        "completed",
        "dispatched",
        "failed_timeline",
        "late_starts",
        "logs",
        "ok_timeline",
        "record",
        "started_at",
        "succeeded",
        "uncompleted",
    )

    def __init__(self, started_at: float, record: bool) -> None:
        self.started_at = started_at
        self.record = record
        self.dispatched = 0
        self.completed = 0
        self.uncompleted = 0
        self.succeeded = 0
        self.late_starts = 0
        self.logs: list[TaskLog | None] = []
        self.cancelled: set[int] = set()  # indexes of the uncompleted tasks, when recording
        self.ok_timeline: list[int] = []
        self.failed_timeline: list[int] = []

    def dispatching(self) -> int:
        """Count one more task dispatched; returns its index (its id is index + 1)."""
        index = self.dispatched
        self.dispatched += 1
        if self.record:
            self.logs.append(None)
        return index

    def add(self, index: int, log: TaskLog, completed: bool) -> None:
        """Count a finished task: *completed* (ran to an outcome) or cancelled."""
        if completed:
            self.completed += 1
            self.count(log, +1)
        else:
            self.uncompleted += 1
            if self.record:
                self.cancelled.add(index)
        if self.record:
            self.logs[index] = log

    def count(self, log: TaskLog, sign: int) -> None:
        """Add (+1) or take back (-1) a completed task's success and timeline bucket."""
        ended = log.ended_at if log.ended_at is not None else self.started_at
        bucket = max(0, int((ended - self.started_at) / STEP))
        timeline = self.ok_timeline if log.ok else self.failed_timeline
        if bucket >= len(timeline):
            timeline.extend([0] * (bucket + 1 - len(timeline)))
        timeline[bucket] += sign
        if log.ok:
            self.succeeded += sign

    def report(self, total: int, ended_at: float) -> Report:
        logs = [log for log in self.logs if log is not None] if self.record else []
        return Report(
            results=[log.result for log in logs],
            logs=logs,
            started_at=self.started_at,
            ended_at=ended_at,
            duration=ended_at - self.started_at,
            total=total,
            completed=self.completed,
            uncompleted=self.uncompleted,
            undispatched=total - self.dispatched,
            succeeded=self.succeeded,
            failed=self.completed - self.succeeded,
            late_starts=self.late_starts,
            ok_timeline=tuple(self.ok_timeline),
        )


@dataclass(frozen=True, slots=True)
class Report:
    """The outcome of a dispatch.

    - ``results``, ``logs``: one per dispatched task, in task order (empty when the dispatch
      ran with ``record=False``); a task cancelled before it ended has its ``JobCancelled``
      as result.
    - ``started_at``, ``ended_at`` (unix times), ``duration`` (seconds): the dispatch's own,
      from the schedule's origin (its runtime up) to the end of the last task's ``on_done``.
    - ``total``: the tasks given; ``completed``: those that ran to an outcome (``succeeded``
      plus ``failed``); ``uncompleted``: dispatched but cancelled before they ended;
      ``undispatched``: never started (``duration`` ran out, or the schedule did).
      ``completed + uncompleted + undispatched == total``.
    - ``late_starts``: open model only, tasks that waited for a free slot (``workers``
      tasks were in flight at their time) or started more than 5 ms after their intended
      time (the loop or the runtime was behind).
    """

    # Not in the repr: asyncio and loggers repr a finished task's result, and a repr that
    # grows with the task count would cost seconds on a long run.
    results: list[Any] = field(repr=False)
    logs: list[TaskLog] = field(repr=False)
    started_at: float
    ended_at: float
    duration: float
    total: int
    completed: int
    uncompleted: int
    undispatched: int
    succeeded: int
    failed: int
    late_starts: int
    ok_timeline: tuple[int, ...] = field(repr=False)

    def tps(self, interval: float | None = None, *, window: float = PEAK_WINDOW) -> Throughput:
        """Average TPS, TPS per *interval* seconds (default 1) and the peak over *window*.

        Both are rounded to whole 0.1-second steps (at least one); see :class:`Throughput`.
        """
        return throughput(
            self.ok_timeline,
            started_at=self.started_at,
            duration=self.duration,
            interval=1.0 if interval is None else interval,
            window=window,
        )


def _steps(name: str, seconds: object) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {seconds!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {seconds!r}")
    return max(1, round(seconds / STEP))


def seconds_of(steps: int) -> float:
    return round(steps * STEP, 9)


def throughput(
    ok_timeline: Sequence[int],
    *,
    started_at: float,
    duration: float,
    interval: float,
    window: float,
) -> Throughput:
    """TPS figures from counts of successful tasks per :data:`STEP`-second bucket."""
    per_interval = _steps("interval", interval)
    per_window = _steps("window", window)
    total = sum(ok_timeline)
    average = total / duration if duration > 0 else 0.0
    buckets = max(len(ok_timeline), math.ceil(round(duration / STEP, 6)))
    counts = list(ok_timeline) + [0] * (buckets - len(ok_timeline))

    intervals = []
    for first in range(0, buckets, per_interval):
        length = min(per_interval * STEP, duration - first * STEP)
        slice_sum = sum(counts[first : first + per_interval])
        intervals.append(slice_sum / length if length > 0 else 0.0)

    if buckets <= per_window:  # the run is one window
        return Throughput(
            average, seconds_of(per_interval), intervals, average, started_at,
            started_at + duration, max(duration, 0.0),
        )  # fmt: skip
    best = running = sum(counts[:per_window])
    best_first = 0
    for first in range(1, buckets - per_window + 1):
        running += counts[first + per_window - 1] - counts[first - 1]
        if running > best:
            best, best_first = running, first
    seconds = seconds_of(per_window)
    peak_started = started_at + best_first * STEP
    return Throughput(
        average, seconds_of(per_interval), intervals, best / seconds, peak_started,
        peak_started + seconds, seconds,
    )  # fmt: skip
