"""``--plot``: throughput and latency over time as a PNG (needs the ``plot`` extra,
matplotlib)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ._report import LoadReport

__all__ = ["can_plot", "plot"]


def can_plot() -> bool:
    """True when matplotlib is installed (``pip install 'asyncworkers[plot]'``)."""
    return importlib.util.find_spec("matplotlib") is not None


def plot(report: LoadReport, path: str | Path) -> None:
    """Write *report*'s timeline to *path* as a PNG: requests and errors per second above,
    latency p50 and p99 per second below (from the intended send time in the open model)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt

    timeline = report.timeline()
    seconds = [entry["second"] for entry in timeline]
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    try:
        top.plot(seconds, [e["requests"] for e in timeline], label="requests/s")
        top.plot(seconds, [e["errors"] for e in timeline], label="errors/s", color="tab:red")
        if report.target_rate:
            top.axhline(report.target_rate, linestyle="--", color="gray", label="target rate")
        top.set_ylabel("per second")
        top.legend(loc="upper right")
        bottom.plot(seconds, [e["latency_ms"]["p50"] for e in timeline], label="p50")
        bottom.plot(seconds, [e["latency_ms"]["p99"] for e in timeline], label="p99")
        bottom.set_ylabel("latency (ms)")
        bottom.set_xlabel("seconds from the start")
        bottom.legend(loc="upper right")
        config = report.config
        figure.suptitle(f"{config.method} {config.url}, concurrency {config.concurrency}")
        figure.tight_layout()
        figure.savefig(path, format="png")
    finally:
        plt.close(figure)
