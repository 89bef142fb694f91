"""Schedules of periodic tasks: the instants at which a task is due, cron or interval.

An instant is a unix time every worker computes alike from the schedule alone (an interval
counts from the unix epoch; cron reads UTC), so that workers on many hosts agree on which run
is which without talking to each other: the instant names the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["MAX_CATCH_UP", "Periodic", "Schedule", "make_schedule", "runs_after_downtime"]

# catch_up=True: at most this many missed runs are enqueued after a downtime, the most
# recent ones (a schedule every second, down a week, is not 600,000 jobs).
MAX_CATCH_UP = 1000

# The shortest interval: each run is a row, and its key names the instant to the microsecond.
_SHORTEST = 0.001


class Schedule:
    """When a periodic task is due. Instants are unix seconds."""

    def latest(self, now: float) -> float:
        """The latest instant at or before *now*."""
        raise NotImplementedError

    def next_after(self, when: float) -> float:
        """The first instant strictly after *when*."""
        raise NotImplementedError

    def missed(self, after: float, upto: float, limit: int) -> list[float]:
        """The instants in (*after*, *upto*], oldest first: the *limit* latest of them."""
        out: list[float] = []
        when = self.latest(upto)
        while when > after and len(out) < limit:
            out.append(when)
            when = self.latest(math.nextafter(when, -math.inf))
        out.reverse()
        return out


@dataclass(frozen=True, slots=True)
class Every(Schedule):
    """Every *seconds*, at the multiples of it since the unix epoch."""

    seconds: float

    def latest(self, now: float) -> float:
        return math.floor(now / self.seconds) * self.seconds

    def next_after(self, when: float) -> float:
        return (math.floor(when / self.seconds) + 1) * self.seconds

    def missed(self, after: float, upto: float, limit: int) -> list[float]:
        # By the instants' numbers: stepping back from a float instant by one ulp and
        # rounding down again may land on the same instant (0.1 s is not a binary fraction).
        last = math.floor(upto / self.seconds)
        out = []
        for k in range(last, last - limit, -1):
            instant = k * self.seconds
            if instant <= after:
                break
            out.append(instant)
        out.reverse()
        return out

    def __str__(self) -> str:
        return f"every {self.seconds:g} s"


@dataclass(frozen=True, slots=True)
class Cron(Schedule):
    """A cron expression, in UTC: 5 fields (minute first), or 6 with seconds last."""

    expression: str

    def latest(self, now: float) -> float:
        from croniter import croniter

        # croniter's get_prev is strictly before its start: start just after this second
        value: float = croniter(self.expression, math.floor(now) + 1).get_prev(float)
        return value

    def next_after(self, when: float) -> float:
        from croniter import croniter

        value: float = croniter(self.expression, when).get_next(float)
        return value

    def __str__(self) -> str:
        return f"cron {self.expression!r} (UTC)"


def make_schedule(schedule: object) -> Schedule:
    """A cron string, or an interval (seconds > 0, or a ``timedelta``), checked."""
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, str):
        from croniter import croniter

        if not croniter.is_valid(schedule):
            raise ValueError(
                f"schedule {schedule!r} is not a cron expression (5 fields, minute first, "
                "or 6 with seconds last; e.g. '*/5 * * * *')"
            )
        return Cron(schedule)
    if isinstance(schedule, timedelta):
        schedule = schedule.total_seconds()
    if isinstance(schedule, bool) or not isinstance(schedule, int | float):
        raise TypeError(f"schedule must be a cron string, seconds or a timedelta, got {schedule!r}")
    if not (schedule > 0 and math.isfinite(schedule)):
        raise ValueError(f"an interval schedule must be seconds > 0, got {schedule!r}")
    if schedule < _SHORTEST:
        raise ValueError(
            f"an interval schedule must be at least {_SHORTEST} s (each run is a job), "
            f"got {schedule!r}"
        )
    return Every(float(schedule))


@dataclass(frozen=True, slots=True)
class Periodic:
    """A task's schedule, and what each of its runs is."""

    schedule: Schedule
    args: dict[str, Any]
    runs: int  # the most runs enqueued at one look (1: after a downtime, only the latest)

    def key(self, task: str, instant: float) -> str:
        """The idempotency key of the run of *task* at *instant*."""
        return f"periodic:{task}:{datetime.fromtimestamp(instant, UTC).isoformat()}"


def runs_after_downtime(catch_up: object) -> int:
    """*catch_up* as the most runs one look enqueues: 1 (False), MAX_CATCH_UP (True), or n."""
    if catch_up is False:
        return 1
    if catch_up is True:
        return MAX_CATCH_UP
    if isinstance(catch_up, bool) or not isinstance(catch_up, int):
        raise TypeError(f"catch_up must be a bool or a number of runs, got {catch_up!r}")
    if not 1 <= catch_up <= MAX_CATCH_UP:
        raise ValueError(f"catch_up must be between 1 and {MAX_CATCH_UP} runs, got {catch_up}")
    return catch_up
