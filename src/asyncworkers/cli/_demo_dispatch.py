"""The dispatch part of ``asyncworkers demo``: a paced task list and its TPS report."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

from rich.table import Table

import asyncworkers as aw

__all__ = ["DispatchDemo", "dispatch_checks", "dispatch_table", "run_dispatch_demo"]

# 200 pretend requests at 400 per second: half a second, open model.
TASKS = 200
RATE = 400.0
IN_FLIGHT = 20
FAIL_EVERY = 10  # every 10th request answers False: a failed task
TPS_INTERVAL = 0.1  # seconds per TPS figure in the table
PEAK_WINDOW = 0.2  # seconds of the sustained peak


@dataclass(frozen=True)
class DispatchDemo:
    """The report of the demo's dispatch and its throughput figures."""

    report: aw.Report
    tps: aw.Throughput


async def pretend_request(task_id: int, seed: int, task: Any, metadata: dict[str, Any]) -> bool:
    """5 to 20 ms of pretend I/O; every FAIL_EVERY-th one fails."""
    delay = random.Random(seed * 100_003 + task_id).uniform(0.005, 0.02)
    metadata["delay"] = delay
    await asyncio.sleep(delay)
    return task_id % FAIL_EVERY != 0


async def run_dispatch_demo(seed: int) -> DispatchDemo:
    """Dispatch the pretend requests at RATE per second and take their TPS figures."""
    report = await aw.dispatch(pretend_request, TASKS, config=seed, rate=RATE, workers=IN_FLIGHT)
    return DispatchDemo(report, report.tps(TPS_INTERVAL, window=PEAK_WINDOW))


def dispatch_checks(demo: DispatchDemo) -> list[tuple[str, bool]]:
    """The claims of the dispatch part, checked."""
    report = demo.report
    failing = TASKS // FAIL_EVERY
    offsets = [(log.intended_at or 0.0) - report.started_at for log in report.logs]
    return [
        (
            f"dispatch: {TASKS} tasks at {RATE:.0f}/s ran, {failing} planned failures counted",
            report.completed == TASKS and report.failed == failing,
        ),
        (
            "dispatch: task i meant to start at i / rate, whatever the completions",
            all(abs(offset - i / RATE) < 1e-6 for i, offset in enumerate(offsets)),
        ),
    ]


def dispatch_table(demo: DispatchDemo) -> Table:
    """The dispatch's counts and TPS: average, per interval, and the sustained peak."""
    report, tps = demo.report, demo.tps
    table = Table(title=f"Dispatch: {TASKS} tasks at {RATE:.0f}/s (open model)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    # one figure, split: "completed / failed" read as two outcomes adding up to 220
    table.add_row(
        "tasks completed",
        f"{report.completed} ({report.succeeded} succeeded, {report.failed} failed)",
    )
    table.add_row("late starts", str(report.late_starts))
    table.add_row("duration", f"{report.duration:.2f} s")
    table.add_row("average TPS (successes)", f"{tps.average:.0f}")
    per = " ".join(f"{value:.0f}" for value in tps.intervals)
    table.add_row(f"TPS per {tps.interval:g} s", per)
    table.add_row(f"peak TPS over {tps.window:g} s", f"{tps.peak:.0f}")
    offset = tps.peak_started_at - report.started_at
    table.add_row("peak window", f"{offset:.1f}-{offset + tps.window:.1f} s from the start")
    return table
