"""worker-dispatcher's get_tps(): its TPS report, with its rules, from its dict logs.

The figures follow worker-dispatcher 1.4.0's ``get_tps`` step by step (the main figure,
the intervals, and the peak search over whole-second starts and growing windows), so that a
report reads the same after switching. Two things differ: a task whose result is an
exception counts as failed (worker-dispatcher stopped the program on one instead), and the
peak search counts with a sorted list and stops a start's windows once they cannot win,
instead of rescanning every log for every window: the same peak (benchmarks/dispatch.py
compares both on the same logs; the interval pass, the same in both, costs as much).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..dispatch import http_status

__all__ = ["result_is_success", "tps_report"]

# worker-dispatcher aims at this many intervals when it picks the interval length.
_IDEAL_INTERVALS = 100


def result_is_success(result: Any) -> bool:
    """worker-dispatcher's rule: falsy results fail, and so do HTTP responses not 200.

    A response is an object with an int ``status`` (aiohttp) or ``status_code`` (requests).
    An exception fails too (there worker-dispatcher stopped the program instead).
    """
    if not result or isinstance(result, BaseException):
        return False
    status = http_status(result)
    return status is None or status == 200


def _valid(log: Any) -> bool:
    return isinstance(log, Mapping) and all(k in log for k in ("started_at", "ended_at", "result"))


def tps_calculate(
    started_at: float,
    ended_at: float,
    logs: Sequence[Mapping[str, Any]],
    display_validity: bool = False,
) -> dict[str, Any]:
    """TPS of the logs inside ``[started_at, ended_at]`` (0 for an open end), in the shape of
    worker-dispatcher's ``_tps_calculate``."""
    log_started_at = log_ended_at = 0.0
    times: list[float] = []
    success_times: list[float] = []
    invalid = task_start_count = task_end_count = 0
    for log in logs:
        if not _valid(log):
            invalid += 1
            continue
        start, end = log["started_at"], log["ended_at"]
        if started_at and ended_at:
            task_start_count += started_at <= start < ended_at
            task_end_count += started_at < end <= ended_at
        elif started_at:
            task_start_count += started_at <= start
            task_end_count += started_at <= end
        elif ended_at:
            task_start_count += start <= ended_at
            task_end_count += end <= ended_at
        if (started_at and start < started_at) or (ended_at and end > ended_at):
            continue
        if start < log_started_at or log_started_at == 0:
            log_started_at = start
        log_ended_at = max(log_ended_at, end)
        exec_time = log["duration"] if "duration" in log else end - start
        times.append(exec_time)
        if result_is_success(log["result"]):
            success_times.append(exec_time)
    total = len(times)
    if not started_at:
        task_start_count, started_at = total, log_started_at
    if not ended_at:
        task_end_count, ended_at = total, log_ended_at
    duration = ended_at - started_at
    data: dict[str, Any] = {
        "tps": round(len(success_times) / duration, 2) if duration > 0 else 0,
        "started_at": started_at,
        "ended_at": ended_at,
        "duration": duration,
        "metrics": {
            "execution_time": _spread(times),
            "success_execution_time": _spread(success_times),
        },
        "count": {
            "success": len(success_times),
            "total": total,
            "start": task_start_count,
            "end": task_end_count,
        },
    }
    if display_validity:
        data["count"]["invalidity"] = total - invalid  # sic: worker-dispatcher's figure
    return data


def _spread(times: list[float]) -> dict[str, float]:
    # worker-dispatcher treats a 0 sum as "no data" (avg 0) and keeps 0 for min/max then.
    total = sum(times)
    return {
        "avg": total / len(times) if total else 0,
        "max": max(times) if times else 0,
        "min": min(times) if times else 0,
    }


def tps_report(
    logs: Sequence[Mapping[str, Any]],
    *,
    display_intervals: bool,
    interval: float,
    reverse_interval: bool,
    say: Any,
    debug: bool,
) -> dict[str, Any]:
    """worker-dispatcher's ``get_tps`` report of *logs*; *say* prints the progress lines."""
    say("--- Start calculating the TPS data ---")
    main = tps_calculate(0, 0, logs, True)
    started_at, ended_at = main["started_at"], main["ended_at"]
    success = main["count"]["success"]
    threshold = main["tps"]
    if debug:
        say(f"  - Average TPS: {threshold}, Total Duration: {main['duration']}s, "
            f"Success Count: {success}")  # fmt: skip
    peak: dict[str, Any] = {}
    intervals: list[dict[str, Any]] = []
    if success == 0:
        say("--- No sucessful task to compile intervals ---")
    else:
        step = interval or _interval_for(main["duration"], main["metrics"]["execution_time"]["avg"])
        say(f"--- Start to compile intervals with an interval of {step} seconds ---")
        peak, threshold, intervals = _intervals(
            logs, started_at, ended_at, -step if reverse_interval else step, threshold, say, debug
        )
    say("--- Start to find the peak TPS ---")
    found = _search_peak(logs, ended_at, threshold, say, debug)
    if found is not None:
        peak = tps_calculate(found[0], found[1], logs)
    main["peak"] = peak
    if display_intervals:
        main["intervals"] = intervals
    return main


def _interval_for(duration: float, avg: float) -> float:
    """worker-dispatcher's default interval: 3 average tasks, or 1/100 of the run."""
    if avg and duration / (avg * 3) <= _IDEAL_INTERVALS:
        return max(1, round(avg * 3, 2))
    if duration / _IDEAL_INTERVALS >= 1:
        return math.ceil(duration / _IDEAL_INTERVALS)
    return 1


def _intervals(
    logs: Sequence[Mapping[str, Any]],
    started_at: float,
    ended_at: float,
    step: float,
    threshold: float,
    say: Any,
    debug: bool,
) -> tuple[dict[str, Any], float, list[dict[str, Any]]]:
    peak: dict[str, Any] = {}
    best_count = 0
    rows = []
    pointer = ended_at if step < 0 else started_at
    while started_at <= pointer <= ended_at:
        here = pointer
        pointer += step
        interval_end = min(here if step < 0 else pointer, ended_at)
        interval_start = max(pointer if step < 0 else here, started_at)
        data = tps_calculate(interval_start, interval_end, logs)
        rows.append(data)
        if debug:
            say(f"  - Interval - Start Time: {interval_start}, End Time: {interval_end}, "
                f"TPS: {data['tps']}")  # fmt: skip
        count, tps = int(data["count"]["success"]), float(data["tps"])
        if count and count > best_count:
            best_count = count
            if tps > threshold:
                if debug:
                    say(f"    * Peak detected above the current TPS threshold - Interval TPS: "
                        f"{tps}, Main TPS: {threshold}")  # fmt: skip
                peak, threshold = data, tps
    return peak, threshold, rows


def _search_peak(
    logs: Sequence[Mapping[str, Any]], ended_at: float, threshold: float, say: Any, debug: bool
) -> tuple[float, float] | None:
    """Whole-second starts with more successes than the best TPS so far, each tried with
    windows of 1, 2, 3... seconds (and the run's end): successes that started at or after
    the start and ended (rounded up) inside the window, over the window's length."""
    spans = [
        (math.floor(log["started_at"]), math.ceil(log["ended_at"]))
        for log in logs
        if _valid(log) and result_is_success(log["result"])
    ]
    per_start: dict[int, int] = {}
    for start, _ in spans:
        per_start[start] = per_start.get(start, 0) + 1
    best: tuple[float, float] | None = None
    last = math.ceil(ended_at) if spans else 0
    for start, count in per_start.items():
        if count <= threshold:
            continue
        if debug:
            say(f"  - Detecting from Start Time: {start}, Count: {count}, "
                f"Current TPS Threshold: {threshold}")  # fmt: skip
        ends = sorted(end for begin, end in spans if begin >= start)
        length: float = 0
        while start + length <= last:
            length = ended_at - start if start + length > ended_at else length + 1
            if length <= 0 or len(ends) / length <= threshold:
                break  # no longer window can beat the best: it holds these tasks at most
            tps = bisect.bisect_right(ends, start + length) / length
            if tps > threshold:
                threshold, best = tps, (start, start + length)
                if debug:
                    say(f"    * Peak detected above the current TPS threshold - TPS: {tps}, "
                        f"Started at: {start}, Ended at: {start + length}")  # fmt: skip
    return best
