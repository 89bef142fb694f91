"""What one process saw, in a form that merges exactly across processes.

Latencies go into HDR histograms (the ``hdrhistogram`` package): integer microseconds with
three significant figures, one histogram per second of the timeline, the whole run's being
their sum (a write into a pure-Python histogram is the costliest step of recording a
request, so each request is written once). A histogram is a fixed
array of counts, so the histograms of several processes add up to exactly the histogram of
the whole run, which percentiles never would. A process hands its :class:`Recorder` to the
parent as :meth:`Recorder.dump` (plain data: counters and base64 histograms) and the parent
:meth:`Recorder.merge` s them.

Memory stays flat however long the run: only the current and the previous second of the
timeline keep a live histogram; older seconds are kept compressed (a few dozen bytes).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

__all__ = ["ERROR_KINDS", "LATE_AFTER_S", "Recorder", "Second", "new_histogram", "write"]

ERROR_KINDS = ("connect", "timeout", "http_4xx", "http_5xx", "other")

# Latencies are recorded in microseconds, from 1 us to one hour; longer ones are clamped.
LOWEST_US = 1
HIGHEST_US = 3_600_000_000
# A send is late when it leaves more than this after its intended time: the same threshold
# as dispatch()'s late starts (below it is the event loop's own timer jitter).
LATE_AFTER_S = 0.005


def new_histogram(significant_figures: int = 3) -> HdrHistogram:
    """An empty latency histogram in microseconds."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, significant_figures)


def _micros(seconds: float) -> int:
    return min(max(int(seconds * 1_000_000), LOWEST_US), HIGHEST_US)


# The layout of every histogram made by new_histogram(): hdrh's own bucket arithmetic
# (histogram.py, _counts_index_for) needs only these four numbers.
_LAYOUT = new_histogram()
_MASK = _LAYOUT.sub_bucket_mask
_SHIFT = _LAYOUT.unit_magnitude
_HALF_MAGNITUDE = _LAYOUT.sub_bucket_half_count_magnitude
_HALF_COUNT = _LAYOUT.sub_bucket_half_count
del _LAYOUT


def write(histogram: HdrHistogram, micros: int) -> None:
    """``histogram.record_value(micros)`` in one call, for a histogram of new_histogram()'s
    layout and ``LOWEST_US <= micros <= HIGHEST_US``.

    hdrh's record_value walks five Python calls (and ``bin()`` to count leading zeros) per
    value; on a load run that is a good share of the client's own work per request. This is
    the same arithmetic with ``int.bit_length()``; a test checks it against record_value.
    """
    bucket = (micros | _MASK).bit_length() - _SHIFT - _HALF_MAGNITUDE - 1
    index = ((bucket + 1) << _HALF_MAGNITUDE) + (micros >> (bucket + _SHIFT)) - _HALF_COUNT
    histogram.counts[index] += 1
    histogram.total_count += 1
    if micros < histogram.min_value:
        histogram.min_value = micros
    if micros > histogram.max_value:
        histogram.max_value = micros


@dataclass
class Second:
    """One second of the timeline: requests that ended in it, errors, their latencies."""

    requests: int = 0
    errors: int = 0
    latency: HdrHistogram | None = None  # live while the second is recent
    encoded: str | None = None  # compressed once it is not

    def histogram(self) -> HdrHistogram:
        """The second's latency histogram (decoded when it was compressed)."""
        if self.latency is not None:
            return self.latency
        if self.encoded is not None:
            return HdrHistogram.decode(self.encoded)
        return new_histogram()

    def compress(self) -> None:
        if self.latency is not None:
            self.encoded = self.latency.encode().decode("ascii")
            self.latency = None


@dataclass
class Recorder:
    """Counts, latency histograms and a per-second timeline of one run (or of several
    merged). ``started_at``/``ended_at`` are unix times; the timeline's second *i* holds the
    requests that ended *i* to *i+1* seconds after ``started_at``."""

    started_at: float
    open_model: bool
    ended_at: float | None = None
    requests: int = 0
    ok: int = 0
    late_sends: int = 0
    first_intended: float | None = None
    last_sent: float = 0.0
    achieved_rate: float = 0.0  # open model, set by finish(); merged runs add theirs
    status_codes: Counter[int] = field(default_factory=Counter)
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    corrected: HdrHistogram = field(default_factory=new_histogram)
    uncorrected: HdrHistogram = field(default_factory=new_histogram)
    timeline: list[Second] = field(default_factory=list)
    # The newest second of the timeline, where nearly every request lands.
    _current: Second = field(default_factory=Second, init=False, repr=False, compare=False)
    _current_index: int = field(default=-(2**63), init=False, repr=False, compare=False)

    def record(
        self, outcome: int | str, started_at: float, ended_at: float, intended_at: float | None
    ) -> None:
        """One finished request: its status code (or error kind), when it was sent and
        when it ended, and when it was meant to be sent (None in the closed model)."""
        self.requests += 1
        failed = True
        if type(outcome) is int:
            self.status_codes[outcome] += 1
            if outcome < 400:
                failed = False
                self.ok += 1
            else:
                self.errors_by_kind["http_5xx" if outcome >= 500 else "http_4xx"] += 1
        else:
            self.errors_by_kind[outcome] += 1  # type: ignore[index]
        if intended_at is None:
            corrected = int((ended_at - started_at) * 1_000_000)
        else:
            # The loop's timers may fire a little early (uvloop rounds to 1 ms): a request
            # sent before its time is measured from its send, never from a later instant.
            corrected = int((ended_at - min(intended_at, started_at)) * 1_000_000)
            write(self.uncorrected, _micros(ended_at - started_at))
            if started_at - intended_at > LATE_AFTER_S:
                self.late_sends += 1
            if self.first_intended is None:
                self.first_intended = intended_at
            if started_at > self.last_sent:
                self.last_sent = started_at
        if corrected < LOWEST_US:
            corrected = LOWEST_US
        elif corrected > HIGHEST_US:
            corrected = HIGHEST_US
        # One histogram write per request (they are the costly part): into the second's
        # histogram only; the whole run's is their sum, made by finish().
        index = int(ended_at - self.started_at)
        second = self._current if index == self._current_index else self._second(index)
        second.requests += 1
        second.errors += failed
        if second.latency is None:  # a second already compressed (the clock stepped back)
            second.latency, second.encoded = second.histogram(), None
        write(second.latency, corrected)

    def finish(self, ended_at: float, target_rate: float | None) -> None:
        """Close the run at *ended_at*; in the open model work out the achieved send rate:
        requests over the span from the first intended send to the last actual one, plus
        one interval (n sends on time at rate r span (n-1)/r)."""
        self.ended_at = ended_at
        self.corrected = new_histogram()
        for second in self.timeline:
            self.corrected.add(second.histogram())
        if target_rate and self.first_intended is not None and self.requests:
            span = max(self.last_sent - self.first_intended, 0.0) + 1 / target_rate
            self.achieved_rate = self.requests / span

    def _second(self, index: int) -> Second:
        timeline = self.timeline
        if index < len(timeline):
            return timeline[max(index, 0)]
        index = max(index, 0)
        self._current_index = index
        # Seconds before the previous one get no more requests: compress them. Seconds
        # skipped over (nothing ended in them) stay empty, without a histogram.
        start = max(0, len(timeline) - 2)
        while len(timeline) <= index:
            timeline.append(Second())
        for old in timeline[start : index - 1]:
            old.compress()
        for recent in timeline[max(index - 1, 0) : index + 1]:
            if recent.latency is None and recent.encoded is None:
                recent.latency = new_histogram()
        self._current = timeline[index]
        return self._current

    @property
    def errors(self) -> int:
        return self.requests - self.ok

    # -- between processes -----------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """Plain data (ints, strs, lists) that :meth:`load` turns back into a Recorder."""
        return {
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "open_model": self.open_model,
            "requests": self.requests,
            "ok": self.ok,
            "late_sends": self.late_sends,
            "achieved_rate": self.achieved_rate,
            "status_codes": dict(self.status_codes),
            "errors_by_kind": dict(self.errors_by_kind),
            "corrected": self.corrected.encode().decode("ascii"),
            "uncorrected": self.uncorrected.encode().decode("ascii"),
            "timeline": [
                [s.requests, s.errors, s.histogram().encode().decode("ascii")]
                for s in self.timeline
            ],
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> Recorder:
        """The Recorder that :meth:`dump` described."""
        return cls(
            started_at=data["started_at"],
            ended_at=data["ended_at"],
            open_model=data["open_model"],
            requests=data["requests"],
            ok=data["ok"],
            late_sends=data["late_sends"],
            achieved_rate=data["achieved_rate"],
            status_codes=Counter({int(k): v for k, v in data["status_codes"].items()}),
            errors_by_kind=Counter(data["errors_by_kind"]),
            corrected=HdrHistogram.decode(data["corrected"]),
            uncorrected=HdrHistogram.decode(data["uncorrected"]),
            timeline=[Second(r, e, encoded=h) for r, e, h in data["timeline"]],
        )

    @classmethod
    def merge(cls, parts: list[Recorder]) -> Recorder:
        """One Recorder for several processes' runs: counts and histograms added exactly,
        timelines added second by second (each from its own process's start)."""
        if not parts:
            raise ValueError("merge needs at least one Recorder")
        # The processes start a little apart and their timelines count from their own
        # starts, so the merged run lasts as long as its longest part, not from the first
        # start to the last end.
        started_at = min(p.started_at for p in parts)
        lengths = [p.ended_at - p.started_at for p in parts if p.ended_at is not None]
        total = cls(
            started_at=started_at,
            open_model=parts[0].open_model,
            ended_at=started_at + max(lengths) if lengths else None,
        )
        for part in parts:
            total.requests += part.requests
            total.ok += part.ok
            total.late_sends += part.late_sends
            total.achieved_rate += part.achieved_rate
            total.status_codes.update(part.status_codes)
            total.errors_by_kind.update(part.errors_by_kind)
            total.corrected.add(part.corrected)
            total.uncorrected.add(part.uncorrected)
        seconds = max(len(p.timeline) for p in parts)
        for index in range(seconds):
            merged = Second(latency=new_histogram())
            for part in parts:
                if index < len(part.timeline):
                    second = part.timeline[index]
                    merged.requests += second.requests
                    merged.errors += second.errors
                    assert merged.latency is not None
                    merged.latency.add(second.histogram())
            merged.compress()
            total.timeline.append(merged)
        return total


def percentile_ms(histogram: HdrHistogram, percentile: float) -> float:
    """A percentile in milliseconds (0.0 for an empty histogram)."""
    if histogram.get_total_count() == 0:
        return 0.0
    return int(histogram.get_value_at_percentile(percentile)) / 1000


def summary_ms(histogram: HdrHistogram) -> dict[str, float]:
    """The ``latency_ms`` block of the report: p50, p90, p99, p99_9, max and mean."""
    empty = histogram.get_total_count() == 0
    return {
        "p50": percentile_ms(histogram, 50),
        "p90": percentile_ms(histogram, 90),
        "p99": percentile_ms(histogram, 99),
        "p99_9": percentile_ms(histogram, 99.9),
        "max": 0.0 if empty else histogram.get_max_value() / 1000,
        "mean": 0.0 if empty else round(histogram.get_mean_value() / 1000, 3),
    }


def finite(value: float) -> float:
    """*value*, or 0.0 when it is not finite (JSON has no inf or nan)."""
    return value if math.isfinite(value) else 0.0
