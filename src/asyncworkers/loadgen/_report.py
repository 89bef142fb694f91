"""The report of a load run: a view of its :class:`Recorder`, as JSON and as tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from ._config import LoadConfig
from ._recorder import ERROR_KINDS, Recorder, percentile_ms, summary_ms

__all__ = ["Knee", "LoadReport"]


@dataclass(frozen=True)
class Knee:
    """The highest arrival rate whose p99 stayed under the target and whose achieved rate
    was within 2% of it (``--find-knee``), and the p99 there."""

    rate: float
    p99_ms: float


@dataclass
class LoadReport:
    """What a load run did. ``recorder`` holds the counts and HDR histograms (merged over
    the processes); everything else here is a view of it. ``interrupted`` is True when the
    run was stopped early (Ctrl-C): the report covers what finished until then."""

    config: LoadConfig
    recorder: Recorder
    target_rate: float | None
    interrupted: bool = False
    knee: Knee | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)  # --find-knee's runs

    @property
    def requests(self) -> int:
        return self.recorder.requests

    @property
    def ok(self) -> int:
        return self.recorder.ok

    @property
    def errors(self) -> int:
        return self.recorder.errors

    @property
    def duration(self) -> float:
        """Seconds from the start to the end of the run (0 while it runs)."""
        rec = self.recorder
        return 0.0 if rec.ended_at is None else max(rec.ended_at - rec.started_at, 0.0)

    @property
    def open_model(self) -> bool:
        return self.config.open_model

    def latency_ms(self) -> dict[str, float]:
        """Latency percentiles; in the open model, from each request's intended send time."""
        return summary_ms(self.recorder.corrected)

    def latency_uncorrected_ms(self) -> dict[str, float]:
        """Open model: latency from each request's actual send (what a naive tool shows)."""
        return summary_ms(self.recorder.uncorrected)

    def throughput(self) -> dict[str, Any]:
        """Mean requests/s over the run, and the busiest whole second of the timeline."""
        counts = [second.requests for second in self.recorder.timeline]
        mean = self.requests / self.duration if self.duration > 0 else 0.0
        if not counts:
            return {"mean": mean, "peak": 0.0, "peak_window": None}
        best = max(range(len(counts)), key=counts.__getitem__)
        return {
            "mean": round(mean, 3),
            "peak": float(counts[best]),
            "peak_window": {"start_s": best, "end_s": best + 1},
        }

    def body_bytes_per_s(self) -> float:
        """Mean response body bytes read per second over the run."""
        return self.recorder.body_bytes / self.duration if self.duration > 0 else 0.0

    def timeline(self) -> list[dict[str, Any]]:
        """One entry per second from the start: requests and errors that ended in it, and
        their (corrected) latency p50 and p99."""
        entries = []
        for index, second in enumerate(self.recorder.timeline):
            histogram = second.histogram()
            entries.append(
                {
                    "second": index,
                    "requests": second.requests,
                    "errors": second.errors,
                    "latency_ms": {
                        "p50": percentile_ms(histogram, 50),
                        "p99": percentile_ms(histogram, 99),
                    },
                }
            )
        return entries

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (the keys of ``asyncworkers load --json``)."""
        rec = self.recorder
        data: dict[str, Any] = {
            "url": self.config.url,
            "method": self.config.method,
            "model": "open" if self.open_model else "closed",
            "concurrency": self.config.concurrency,
            "processes": self.config.processes,
            "interrupted": self.interrupted,
            "unfinished": rec.unfinished,
            "duration_s": round(self.duration, 6),
            "requests": rec.requests,
            "ok": rec.ok,
            "errors": rec.errors,
            "errors_by_kind": {kind: rec.errors_by_kind.get(kind, 0) for kind in ERROR_KINDS},
            "status_codes": {str(code): n for code, n in sorted(rec.status_codes.items())},
            "throughput": self.throughput(),
            "body_bytes": rec.body_bytes,
            "body_bytes_per_s": round(self.body_bytes_per_s(), 1),
            "latency_ms": self.latency_ms(),
            "timeline": self.timeline(),
        }
        if self.open_model:
            data["target_rate"] = self.target_rate
            data["achieved_rate"] = round(rec.achieved_rate, 3)
            data["latency_uncorrected_ms"] = self.latency_uncorrected_ms()
            data["late_sends"] = rec.late_sends
        if self.knee is not None or self.steps:
            data["knee"] = (
                None if self.knee is None else {"rate": self.knee.rate, "p99_ms": self.knee.p99_ms}
            )
            data["knee_steps"] = self.steps
        # what `asyncworkers load merge` adds up: the HDR histograms and per-second counts
        data["recorder"] = rec.dump()
        return data

    def render(self, console: Console) -> None:
        """Print the report as a few tables."""
        console.print(self._summary_table())
        if self.open_model:
            console.print(self._open_table())
        console.print(self._latency_table())
        if self.errors:
            console.print(self._errors_table())
        if self.interrupted:
            console.print(
                "[bold yellow]interrupted[/]: the report covers what finished; "
                f"{self.recorder.unfinished} requests in flight were dropped",
                highlight=False,
            )
        if self.steps:
            console.print(self._knee_table())

    def _summary_table(self) -> Table:
        rec = self.recorder
        model = "open" if self.open_model else "closed"
        table = Table(title=f"{self.config.method} {self.config.url} ({model} model)")
        headings = ("requests", "ok", "errors", "seconds", "mean req/s", "peak req/s", "MB/s")
        for heading in headings:
            table.add_column(heading, justify="right")
        throughput = self.throughput()
        row = [
            str(rec.requests),
            str(rec.ok),
            str(rec.errors),
            f"{self.duration:.2f}",
            f"{throughput['mean']:.1f}",
            f"{throughput['peak']:.0f}",
            f"{self.body_bytes_per_s() / 1e6:.2f}",
        ]
        table.add_row(*row)
        return table

    def _open_table(self) -> Table:
        rec = self.recorder
        table = Table(title="Open model")
        for heading in ("target req/s", "achieved req/s", "late sends"):
            table.add_column(heading, justify="right")
        table.add_row(
            f"{self.target_rate or 0:.1f}", f"{rec.achieved_rate:.1f}", str(rec.late_sends)
        )
        return table

    def _latency_table(self) -> Table:
        table = Table(title="Latency (ms)")
        table.add_column("")
        keys = ("p50", "p90", "p99", "p99_9", "max", "mean")
        for key in keys:
            table.add_column(key.replace("_", "."), justify="right")
        label = "from intended send" if self.open_model else "latency"
        rows = [(label, self.latency_ms())]
        if self.open_model:
            rows.append(("from actual send", self.latency_uncorrected_ms()))
        for name, values in rows:
            table.add_row(name, *(f"{values[key]:.2f}" for key in keys))
        return table

    def _errors_table(self) -> Table:
        rec = self.recorder
        table = Table(title="Errors by kind")
        for kind in ERROR_KINDS:
            table.add_column(kind, justify="right")
        table.add_row(*(str(rec.errors_by_kind.get(kind, 0)) for kind in ERROR_KINDS))
        return table

    def _knee_table(self) -> Table:
        title = "Knee: none found" if self.knee is None else f"Knee: {self.knee.rate:g} req/s"
        table = Table(title=title)
        for heading in ("target req/s", "achieved req/s", "p99 ms", "errors", "under target"):
            table.add_column(heading, justify="right")
        for step in self.steps:
            table.add_row(
                f"{step['rate']:g}",
                f"{step['achieved_rate']:.1f}",
                f"{step['p99_ms']:.2f}",
                str(step["errors"]),
                "yes" if step["passed"] else "no",
            )
        return table
