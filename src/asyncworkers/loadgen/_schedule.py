"""Intended send times: the arrival rate of ``--stages`` turned into start-time offsets.

The rate ramps linearly inside each stage, from the previous stage's rate (0 before the
first) to the stage's own. Request *i* (from 0) is intended at the time *t* when the
number of arrivals so far, the integral of the rate, reaches *i*. Inside a stage of length
``D`` ramping from ``a`` to ``b`` that integral is ``a*t + k*t**2`` with ``k = (b-a)/(2D)``,
so the time for ``x`` more arrivals is the root ``2x / (a + sqrt(a**2 + 4kx))`` (the form
that stays exact when ``k`` is 0 and never divides by a small difference).

The offsets come from a generator: a long run at a high rate never holds them all.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

from ._config import Stage

__all__ = ["arrivals", "stage_offsets"]


def arrivals(stages: Sequence[Stage]) -> float:
    """How many requests the stages ask for (the integral of the rate over them)."""
    total, rate = 0.0, 0.0
    for stage in stages:
        total += (rate + stage.rate) / 2 * stage.duration
        rate = stage.rate
    return total


def stage_offsets(stages: Sequence[Stage]) -> Iterator[float]:
    """Intended start offsets in seconds, non-decreasing, for every request of *stages*."""
    begin = 0.0  # when the current stage begins
    before = 0.0  # arrivals before it
    rate = 0.0  # the rate it starts from
    i = 0
    for stage in stages:
        a, b, length = rate, stage.rate, stage.duration
        k = (b - a) / (2 * length)
        in_stage = (a + b) / 2 * length
        while i < before + in_stage:
            x = i - before
            root = a * a + 4 * k * x
            t = 2 * x / (a + math.sqrt(max(root, 0.0))) if x > 0 else 0.0
            yield begin + min(t, length)
            i += 1
        begin += length
        before += in_stage
        rate = b
