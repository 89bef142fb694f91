"""Intended start times of the open model: from a rate, or from given offsets.

A schedule is an iterator of offsets in seconds from the start of the dispatch, one per
task, non-decreasing. The engine starts each task at its offset, or at once if it is already
behind; it never waits for a completion to decide when to start, and one late start never
delays the ones after it (their offsets do not move).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sized

__all__ = ["LATE_AFTER", "checked_offsets", "rate_offsets"]

# A task that starts more than this after its intended time counts as a late start. Below
# it is the event loop's own timer and scheduling jitter on a busy machine (epoll waits in
# whole milliseconds, a crowded loop runs callbacks a little late); above it, a backlog.
LATE_AFTER = 0.005


def rate_offsets(rate: float) -> Iterator[float]:
    """``0, 1/rate, 2/rate, ...``: computed from the index, so rounding never accumulates."""
    interval = 1.0 / rate
    return (i * interval for i in itertools.count())


def checked_offsets(start_times: Iterable[object], tasks: int | None) -> Iterator[float]:
    """Iterate *start_times*, checking each offset as it comes.

    A sized collection is checked at once (its length against *tasks*, when known, and every
    value), so that a bad schedule fails at the call; any other iterable is checked lazily,
    and a schedule that ends early leaves the remaining tasks undispatched.
    """
    if isinstance(start_times, str | bytes) or not isinstance(start_times, Iterable):
        raise TypeError(
            f"start_times must be an iterable of offsets in seconds, got {start_times!r}"
        )
    if isinstance(start_times, Sized):
        values = list(_checked(iter(start_times)))
        if tasks is not None and len(values) != tasks:
            raise ValueError(
                f"start_times has {len(values)} offsets for {tasks} tasks (one per task)"
            )
        return iter(values)
    return _checked(iter(start_times))


def _checked(values: Iterator[object]) -> Iterator[float]:
    previous = 0.0
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"start_times[{index}] must be a number of seconds, got {value!r}")
        offset = float(value)
        if not math.isfinite(offset) or offset < 0:
            raise ValueError(f"start_times[{index}] must be finite and >= 0, got {value!r}")
        if offset < previous:
            raise ValueError(
                f"start_times must not decrease: start_times[{index}] = {value!r} comes "
                f"after {previous!r}"
            )
        previous = offset
        yield offset
