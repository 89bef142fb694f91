"""What one process saw, in a form that merges exactly across processes.

Latencies go into HDR histograms (the ``hdrhistogram`` package): integer microseconds with
three significant figures. A histogram is a fixed array of counts, so the histograms of
several processes add up to exactly the histogram of the whole run, which percentiles never
would. A process hands its :class:`Recorder` to the parent as :meth:`Recorder.dump` (plain
data) and the parent :meth:`Recorder.merge` s them.

Recording is on every request's path, so it does as little as it can (measured with
callgrind: hdrh's ``record_value`` plus plain counters cost ~11k instructions a request, a
few percent of an aiohttp request's ~290k). Each second of the timeline has a Counter of
outcomes (status code or error kind) and a histogram; a request adds one to each, nothing
else. The histogram's count goes into a plain list at the index hdrh's own arithmetic gives
(:func:`count_index`); the list is copied into the histogram, and its total, min and max
settled, when the second is read or closed. The run's totals and its histogram are sums
over the seconds.

Memory stays flat however long the run: only the current and the previous second keep a
live histogram; older ones are kept compressed (a few hundred bytes each).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

__all__ = [
    "ERROR_KINDS",
    "LATE_AFTER_S",
    "Recorder",
    "Second",
    "count_index",
    "is_error",
    "new_histogram",
    "settle",
    "write",
]

Outcome = int | str  # a status code, or an error kind

ERROR_KINDS = ("connect", "timeout", "body_too_large", "http_4xx", "http_5xx", "other")

# Latencies are recorded in microseconds, from 1 us to one hour; longer ones are clamped.
LOWEST_US = 1
HIGHEST_US = 3_600_000_000
# A send is late when it leaves more than this after its intended time: the same threshold
# as dispatch()'s late starts (below it is the event loop's own timer jitter).
LATE_AFTER_S = 0.005


def new_histogram(significant_figures: int = 3) -> HdrHistogram:
    """An empty latency histogram in microseconds."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, significant_figures)


def is_error(outcome: Outcome) -> bool:
    """True for an error kind and for a status code of 400 or more."""
    return type(outcome) is not int or outcome >= 400


def error_kind(outcome: Outcome) -> str:
    """The report's error kind of an error outcome."""
    if type(outcome) is int:
        return "http_5xx" if outcome >= 500 else "http_4xx"
    return str(outcome)


def _micros(seconds: float) -> int:
    return min(max(int(seconds * 1_000_000), LOWEST_US), HIGHEST_US)


# The layout of every histogram made by new_histogram(): hdrh's own bucket arithmetic
# (histogram.py, _counts_index_for) needs only these four numbers.
_LAYOUT = new_histogram()
_MASK: int = _LAYOUT.sub_bucket_mask
_SHIFT: int = _LAYOUT.unit_magnitude
_HALF_MAGNITUDE: int = _LAYOUT.sub_bucket_half_count_magnitude
_HALF_COUNT: int = _LAYOUT.sub_bucket_half_count
del _LAYOUT


# With a lowest value of 1 (unit magnitude 0), hdrh's index arithmetic folds into this.
if _SHIFT != 0 or _HALF_COUNT != 1 << _HALF_MAGNITUDE:  # a new hdrh layout: fail loudly
    raise ImportError(f"unexpected hdrhistogram layout: {_SHIFT=}, {_HALF_COUNT=}")
_BITS = _HALF_MAGNITUDE + 1


def count_index(micros: int) -> int:
    """The index in a new_histogram()'s counts of ``LOWEST_US <= micros <= HIGHEST_US``:
    hdrh's ``_counts_index_for`` (five Python calls and a ``bin()``) in one expression."""
    bucket = (micros | _MASK).bit_length() - _BITS
    return (bucket << _HALF_MAGNITUDE) + (micros >> bucket)


def settle(histogram: HdrHistogram) -> HdrHistogram:
    """Set a histogram's total, min and max from its counts array (after counts were
    written straight into it), the way hdrh does after decoding one."""
    raw = bytes(histogram.counts)  # 8-byte little-endian counts; C-speed scans below
    size = histogram.word_size
    last = len(raw.rstrip(b"\0"))
    if last == 0:
        histogram.total_count, histogram.min_value, histogram.max_value = 0, 2**63 - 1, 0
        return histogram
    first = len(raw) - len(raw.lstrip(b"\0"))
    total = sum(histogram.counts[first // size : (last - 1) // size + 1])
    histogram.set_internal_tacking_values(first // size, (last - 1) // size, total)
    return histogram


def write(histogram: HdrHistogram, micros: int) -> None:
    """``histogram.record_value(micros)`` in one call, for a histogram of new_histogram()'s
    layout and ``LOWEST_US <= micros <= HIGHEST_US``.

    hdrh's record_value walks five Python calls (and ``bin()`` to count leading zeros) per
    value; on a load run that is a good share of the client's own work per request. This is
    the same arithmetic with ``int.bit_length()``; a test checks it against record_value.
    """
    histogram.counts[count_index(micros)] += 1
    histogram.total_count += 1
    if micros < histogram.min_value:
        histogram.min_value = micros
    if micros > histogram.max_value:
        histogram.max_value = micros


@dataclass
class Second:
    """One second of the timeline: the outcomes of the requests that ended in it (status
    code or error kind -> count), and their latencies."""

    outcomes: Counter[Outcome] = field(default_factory=Counter)
    latency: HdrHistogram | None = None  # live while the second is recent...
    raw: list[int] | None = None  # ...with its counts written here (a list is quicker)
    encoded: str | None = None  # compressed once it is not recent

    @property
    def requests(self) -> int:
        return sum(self.outcomes.values())

    @property
    def errors(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if is_error(outcome))

    def open(self) -> list[int]:
        """Make the second live (again); its raw counts, to write into."""
        if self.raw is None:
            if self.latency is None and self.encoded is None:  # new: all zeros, quickly
                self.latency = new_histogram()
                self.raw = [0] * self.latency.counts_len
            else:  # compressed already (the clock stepped back): reopen it
                self.latency, self.encoded = self.histogram(), None
                self.raw = list(self.latency.counts)
        return self.raw

    def histogram(self) -> HdrHistogram:
        """The second's latency histogram, settled (decoded when it was compressed)."""
        if self.latency is not None:
            if self.raw is not None:
                self.latency.counts[:] = self.raw
            return settle(self.latency)
        if self.encoded is not None:
            return HdrHistogram.decode(self.encoded)
        return new_histogram()

    def compress(self) -> None:
        if self.latency is not None:
            self.encoded = self.histogram().encode().decode("ascii")
            self.latency = self.raw = None


@dataclass
class Recorder:
    """Outcomes, latency histograms and a per-second timeline of one run (or of several
    merged). ``started_at``/``ended_at`` are unix times; the timeline's second *i* holds the
    requests that ended *i* to *i+1* seconds after ``started_at``. ``corrected`` (latency
    from the intended send in the open model, else from the send) is complete once
    :meth:`finish` ran; ``uncorrected`` (open model: from the actual send) as it goes."""

    started_at: float
    open_model: bool
    ended_at: float | None = None
    sent: int = 0  # requests that left (set by the runner); more than requests if stopped
    body_bytes: int = 0  # response body bytes read (and dropped), of every response
    late_sends: int = 0
    first_intended: float | None = None
    last_sent: float = 0.0
    achieved_rate: float = 0.0  # open model, set by finish(); merged runs add theirs
    corrected: HdrHistogram = field(default_factory=new_histogram)
    uncorrected: HdrHistogram = field(default_factory=new_histogram)
    timeline: list[Second] = field(default_factory=list)
    # The newest second, where nearly every request lands: its index, outcomes and counts.
    _index: int = field(default=-(2**63), init=False, repr=False, compare=False)
    _outcomes: Counter[Outcome] = field(
        default_factory=Counter, init=False, repr=False, compare=False
    )
    _counts: list[int] = field(default_factory=list, init=False, repr=False, compare=False)

    def record(
        self, outcome: Outcome, started_at: float, ended_at: float, intended_at: float | None
    ) -> None:
        """One finished request: its status code (or error kind), when it was sent and
        when it ended, and when it was meant to be sent (None in the closed model)."""
        if intended_at is None:
            micros = int((ended_at - started_at) * 1_000_000)
        else:
            # The loop's timers may fire a little early (uvloop rounds to 1 ms): a request
            # sent before its time is measured from its send, never from a later instant.
            micros = int((ended_at - min(intended_at, started_at)) * 1_000_000)
            write(self.uncorrected, _micros(ended_at - started_at))
            if started_at - intended_at > LATE_AFTER_S:
                self.late_sends += 1
            if self.first_intended is None:
                self.first_intended = intended_at
            if started_at > self.last_sent:
                self.last_sent = started_at
        if micros < LOWEST_US:
            micros = LOWEST_US
        elif micros > HIGHEST_US:
            micros = HIGHEST_US
        index = int(ended_at - self.started_at)
        if index != self._index:
            self._enter(index)
        self._outcomes[outcome] += 1
        bucket = (micros | _MASK).bit_length() - _BITS  # count_index(), inlined
        self._counts[(bucket << _HALF_MAGNITUDE) + (micros >> bucket)] += 1

    def _enter(self, index: int) -> None:
        """Make second *index* the one requests are recorded into."""
        timeline = self.timeline
        index = max(index, 0)
        if index >= len(timeline):
            # Seconds before the previous one get no more requests: compress them. Seconds
            # skipped over (nothing ended in them) stay empty, without a histogram.
            start = max(0, len(timeline) - 2)
            while len(timeline) <= index:
                timeline.append(Second())
            for old in timeline[start : index - 1]:
                old.compress()
        second = timeline[index]
        self._index, self._outcomes, self._counts = index, second.outcomes, second.open()

    def finish(self, ended_at: float, target_rate: float | None) -> None:
        """Close the run at *ended_at*: the whole run's histogram from the seconds', and in
        the open model the achieved send rate: requests over the span from the first
        intended send to the last actual one, plus one interval (n sends on time at rate r
        span (n-1)/r)."""
        self.ended_at = ended_at
        self.corrected = new_histogram()
        for second in self.timeline:
            self.corrected.add(second.histogram())
        requests = self.requests
        if target_rate and self.first_intended is not None and requests:
            span = max(self.last_sent - self.first_intended, 0.0) + 1 / target_rate
            self.achieved_rate = requests / span

    # -- totals: sums over the timeline ------------------------------------------------------

    def outcomes(self) -> Counter[Outcome]:
        """Every outcome of the run, counted."""
        total: Counter[Outcome] = Counter()
        for second in self.timeline:
            total.update(second.outcomes)
        return total

    @property
    def requests(self) -> int:
        return sum(second.requests for second in self.timeline)

    @property
    def errors(self) -> int:
        return sum(second.errors for second in self.timeline)

    @property
    def ok(self) -> int:
        return self.requests - self.errors

    @property
    def unfinished(self) -> int:
        """Requests sent that never finished: dropped in flight when the run was stopped."""
        return max(self.sent - self.requests, 0)

    @property
    def status_codes(self) -> Counter[int]:
        """Responses by status code."""
        return Counter({k: n for k, n in self.outcomes().items() if isinstance(k, int)})

    @property
    def errors_by_kind(self) -> Counter[str]:
        """Failed requests by kind: connect, timeout, http_4xx, http_5xx, other."""
        kinds: Counter[str] = Counter()
        for outcome, n in self.outcomes().items():
            if is_error(outcome):
                kinds[error_kind(outcome)] += n
        return kinds

    # -- between processes -----------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """Plain data (numbers, strings, lists) that :meth:`load` turns back into a
        Recorder."""
        return {
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "open_model": self.open_model,
            "sent": self.sent,
            "body_bytes": self.body_bytes,
            "late_sends": self.late_sends,
            "achieved_rate": self.achieved_rate,
            "corrected": self.corrected.encode().decode("ascii"),
            "uncorrected": self.uncorrected.encode().decode("ascii"),
            "timeline": [
                [list(s.outcomes.items()), s.histogram().encode().decode("ascii")]
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
            sent=data["sent"],
            body_bytes=data.get("body_bytes", 0),
            late_sends=data["late_sends"],
            achieved_rate=data["achieved_rate"],
            corrected=HdrHistogram.decode(data["corrected"]),
            uncorrected=HdrHistogram.decode(data["uncorrected"]),
            timeline=[
                Second(Counter(dict(outcomes)), encoded=encoded)
                for outcomes, encoded in data["timeline"]
            ],
        )

    @classmethod
    def merge(cls, parts: list[Recorder]) -> Recorder:
        """One Recorder for several processes' finished runs: histograms and outcomes
        added exactly, timelines added second by second (each from its own start)."""
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
            total.sent += part.sent
            total.body_bytes += part.body_bytes
            total.late_sends += part.late_sends
            total.achieved_rate += part.achieved_rate
            total.corrected.add(part.corrected)
            total.uncorrected.add(part.uncorrected)
        for index in range(max(len(p.timeline) for p in parts)):
            merged = Second(latency=new_histogram())
            assert merged.latency is not None
            for part in parts:
                if index < len(part.timeline):
                    second = part.timeline[index]
                    merged.outcomes.update(second.outcomes)
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
