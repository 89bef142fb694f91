"""The load generator's entry points: :func:`run` and :func:`find_knee`."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import asyncworkers as aw

from ._config import LoadConfig
from ._processes import run_processes
from ._recorder import Recorder
from ._report import Knee, LoadReport
from ._run import ProgressCallback, run_here, target_rate

__all__ = ["find_knee", "run"]

# --find-knee: a step passes when its achieved rate is at least this share of the target.
KNEE_RATE_SHARE = 0.98
# How many arrival rates it tries after the probe, and when the bracket is narrow enough.
KNEE_MAX_STEPS = 8
KNEE_PRECISION = 0.05
# The step length when the config has no duration.
KNEE_STEP_SECONDS = 5.0


async def run(
    config: LoadConfig,
    *,
    token: aw.CancellationToken | None = None,
    on_progress: ProgressCallback | None = None,
) -> LoadReport:
    """Send the load *config* describes and report it.

    Cancelling *token* stops the run early: the report then covers the requests that
    finished (``report.interrupted`` is True). *on_progress* is called every half second
    with a :class:`Progress` (from the event loop's thread).
    """
    if not isinstance(config, LoadConfig):
        raise TypeError(f"config must be a LoadConfig, got {type(config).__name__}")
    token = token or aw.CancellationToken()
    recorder: Recorder
    if config.processes == 1:
        recorder = await run_here(config, token=token, on_progress=on_progress)
    else:
        recorder = await run_processes(config, token=token, on_progress=on_progress)
    return LoadReport(config, recorder, target_rate(config), interrupted=token.cancelled)


async def find_knee(
    config: LoadConfig,
    p99: float,
    *,
    token: aw.CancellationToken | None = None,
    on_progress: ProgressCallback | None = None,
) -> LoadReport:
    """Find the highest arrival rate whose corrected p99 stays under *p99* seconds and whose
    achieved rate is within 2% of the target.

    Each step is an open-model run of ``config.duration`` seconds (5 s by default). The
    search brackets the knee between 0 and ``config.rate`` when given, else 1.1x the
    requests/s of a closed-model probe at ``config.concurrency``, and bisects the bracket
    (at most 8 steps, or until it is within 5%). Returns the report of the knee's step (of
    the last step when no rate passed) with ``knee`` and ``steps`` filled in.
    """
    if isinstance(p99, bool) or not isinstance(p99, int | float):
        raise TypeError(f"p99 must be a number of seconds, got {p99!r}")
    if not (math.isfinite(p99) and p99 > 0):
        raise ValueError(f"p99 must be > 0 seconds, got {p99!r}")
    token = token or aw.CancellationToken()
    seconds = config.duration or KNEE_STEP_SECONDS
    base = replace(config, rate=None, stages=(), duration=seconds, requests=None)
    if config.rate is not None:
        high = config.rate
    else:
        probe = await run(base, token=token, on_progress=on_progress)
        high = 1.1 * probe.requests / max(probe.duration, 1e-9)
    low = 0.0
    steps: list[dict[str, Any]] = []
    best: LoadReport | None = None
    last: LoadReport | None = None
    rate = high
    for _ in range(KNEE_MAX_STEPS):
        if token.cancelled or rate <= 0:
            break
        last = await run(replace(base, rate=rate), token=token, on_progress=on_progress)
        if last.interrupted:
            break
        p99_ms = last.latency_ms()["p99"]
        passed = p99_ms < p99 * 1000 and last.recorder.achieved_rate >= KNEE_RATE_SHARE * rate
        steps.append(
            {
                "rate": round(rate, 3),
                "achieved_rate": round(last.recorder.achieved_rate, 3),
                "p99_ms": p99_ms,
                "errors": last.errors,
                "passed": passed,
            }
        )
        if passed:
            best, low = last, rate
        else:
            high = rate
        if low > 0 and (high - low) / high <= KNEE_PRECISION:
            break
        rate = (low + high) / 2
    report = best or last
    if report is None:  # stopped before the first step
        report = LoadReport(base, Recorder(0.0, True), None, interrupted=True)
    report.knee = (
        None if best is None else Knee(round(best.target_rate or 0.0, 3), best.latency_ms()["p99"])
    )
    report.steps = steps
    report.interrupted = token.cancelled
    return report
