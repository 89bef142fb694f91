"""``/metrics``: the counters of a Runtime or a Manager, rendered by prometheus-client.

Nothing here keeps a second set of counters: at each scrape a custom collector reads
``Runtime.metrics()`` / ``Manager.metrics()`` (the Manager's count what the store recorded)
and turns them into families. Two things are kept here because no snapshot has them:

- the run and wait time *histograms* (the snapshots carry percentiles, which do not add up
  across workers), bucketed from the samples the Runtime keeps (:class:`JobTimes`);
- the store's queue depth, read by :class:`StoreReading` at most once per ``refresh``
  seconds, however often Prometheus scrapes.

prometheus_client is imported when the first collector is made, never by ``import
asyncworkers``.
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import anyio

import asyncworkers as aw

from .._core._metrics import Recorder, Series
from ._target import View

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

    from ..store import JobRecord

__all__ = ["JobTimes", "StoreReading", "make_registry", "recorder_of"]

#: Bucket bounds (seconds) of the run and wait time histograms: 1 ms to 5 minutes.
TIME_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
)  # fmt: skip

# How many dead letters a reading keeps for the dashboard.
DEAD_SHOWN = 20


class Buckets:
    """One histogram: a count per bucket (the last one is +Inf) and the sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(TIME_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(TIME_BUCKETS, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*TIME_BUCKETS, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


class JobTimes:
    """Run and wait time histograms, filled from the samples the Runtime keeps anyway.

    No hook runs per job (an ``on_complete`` hook cost ~9,000 instructions a job, half a
    plain job): :meth:`ingest`, called ten times a second and at each scrape, buckets the
    samples appended since its last call. The Runtime trims its sample lists to the last
    10,000 once they reach 20,000; samples trimmed before they were bucketed (more than
    10,000 jobs within one tenth of a second) are counted in ``dropped``, never guessed.
    """

    __slots__ = ("_recorder", "_seen", "dropped", "run", "wait")

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self.run = Buckets()
        self.wait = Buckets()
        self._seen = [_end(recorder.run_time), _end(recorder.wait_time)]  # from now on
        self.dropped = 0

    def ingest(self) -> None:
        recorder = self._recorder
        for i, (series, buckets) in enumerate(
            ((recorder.run_time, self.run), (recorder.wait_time, self.wait))
        ):
            end = _end(series)
            start = self._seen[i] - series._total_trimmed
            if start < 0:
                if i == 0:
                    self.dropped -= start
                start = 0
            new = series.samples[start:]
            if new:
                # Sorted once (C), then one bisection per bound rather than per sample: a
                # loop over the samples in Python cost ~1,500 instructions each.
                new.sort()
                counts, below = buckets.counts, 0
                for index, bound in enumerate(TIME_BUCKETS):
                    upto = bisect_right(new, bound)  # values <= bound: Prometheus' "le"
                    counts[index] += upto - below
                    below = upto
                counts[-1] += len(new) - below
                buckets.total += sum(new)
            self._seen[i] = end


def _end(series: Series) -> int:
    """The absolute index after the last sample of *series*."""
    return series._total_trimmed + len(series.samples)


class StoreReading:
    """The store's queue depth, oldest waiting job and dead letters, read in the background
    at most once per *refresh* seconds, and only while somebody looks (a scrape, the
    dashboard): a scrape never waits for the store (counting 100k rows takes SQLite a good
    part of a second), it gets the last reading. Before the first one ends, ``read_at`` is
    None and the store families are left out."""

    def __init__(self, view: View, refresh: float) -> None:
        self._view = view
        self._refresh = refresh
        self._asked = anyio.Event()
        self.read_at: float | None = None  # time.monotonic() of the last reading that ended
        self.queues: dict[str, dict[str, int]] = {}
        self.oldest: JobRecord | None = None
        self.dead: list[JobRecord] = []
        self.error: str | None = None
        self.seconds = 0.0  # how long the last reading took

    def ask(self, *, now: bool = False) -> None:
        """Somebody looks: read again if the last reading is older than *refresh* (or at
        once with *now*, after an action changed the store)."""
        if now or self.read_at is None or time.monotonic() - self.read_at >= self._refresh:
            self._asked.set()

    async def run(self) -> None:
        """The background reader (a task of the endpoint)."""
        if self._view.store is None:
            return
        self._asked.set()  # a first reading at the start, ready for the first look
        while True:
            await self._asked.wait()
            self._asked = anyio.Event()
            await self.read()
            await anyio.sleep(self._refresh)

    async def read(self) -> None:
        store = self._view.store
        assert store is not None
        started = time.monotonic()
        try:
            queues = await store.queue_counts()
            oldest = await store.oldest_waiting()
            dead = await store.dead(DEAD_SHOWN)
        except Exception as exc:  # the database is away: say so, keep the old figures
            self.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        else:
            self.queues = {q: {str(k): v for k, v in c.items()} for q, c in queues.items()}
            self.oldest, self.dead, self.error = oldest, dead, None
        self.read_at = time.monotonic()
        self.seconds = self.read_at - started


class Stuck:
    """What the watchdog found (kept here so that the collector can read it)."""

    __slots__ = ("found_total", "now")

    def __init__(self) -> None:
        self.now = 0  # jobs stuck at the last look
        self.found_total = 0  # jobs ever found stuck (each once)


def recorder_of(runtime: aw.Runtime) -> Recorder:
    """The Runtime's own counters and samples (read, never written, by the endpoint)."""
    return runtime._metrics


def make_registry(
    view: View,
    times: JobTimes,
    reading: StoreReading,
    stuck: Stuck,
    loop_lag: Any,
) -> CollectorRegistry:
    """A registry of its own (not the global one: two endpoints in one process must not
    mix) holding one collector that reads everything at scrape time."""
    from prometheus_client.registry import Collector, CollectorRegistry

    class _Collector(Collector):
        def collect(self) -> Iterator[Metric]:
            times.ingest()
            return _families(view, times, reading, stuck, loop_lag())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return registry


def _families(
    view: View, times: JobTimes, reading: StoreReading, stuck: Stuck, lag: float
) -> Iterator[Metric]:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    jobs = CounterMetricFamily(
        "asyncworkers_jobs",
        "Jobs finished, by task, queue and outcome.",
        labels=("task", "queue", "outcome"),
    )
    retries = CounterMetricFamily("asyncworkers_retries", "Attempts that failed and were retried.")
    running = GaugeMetricFamily("asyncworkers_jobs_in_flight", "Jobs running now.")
    pending = GaugeMetricFamily(
        "asyncworkers_jobs_pending", "Jobs waiting in this process for a worker."
    )
    manager = view.manager
    runtime = view.runtime
    if manager is not None:
        m = manager.metrics()
        for (task, queue, outcome), count in sorted(m.outcomes.items()):
            jobs.add_metric((task, queue, outcome), count)
        retries.add_metric((), m.retried)
        running.add_metric((), m.running)
        yield from _manager_families(m)
    elif runtime is not None:
        rm = runtime.metrics()
        jobs.add_metric(("", "", "succeeded"), rm.completed)
        jobs.add_metric(("", "", "failed"), rm.failed)
        jobs.add_metric(("", "", "cancelled"), rm.cancelled)
        retries.add_metric((), rm.retried)
        running.add_metric((), rm.running)
    pending.add_metric((), 0 if runtime is None else runtime.metrics().pending)
    yield from (jobs, retries, running, pending)
    for name, what, buckets in (
        ("asyncworkers_job_run_seconds", "Time from a job's start to its end.", times.run),
        ("asyncworkers_job_wait_seconds", "Time from queueing to start.", times.wait),
    ):
        family = HistogramMetricFamily(name, what)
        family.add_metric((), buckets.cumulative(), buckets.total)
        yield family
    yield CounterMetricFamily(
        "asyncworkers_job_times_dropped",
        "Run times trimmed by the runtime before the histograms took them.",
        value=times.dropped,
    )
    yield GaugeMetricFamily(
        "asyncworkers_loop_lag_seconds",
        "Longest delay of the event loop in running a ready callback since the last scrape.",
        value=lag,
    )
    yield GaugeMetricFamily(
        "asyncworkers_stuck_jobs", "Jobs running longer than the watchdog allows.", value=stuck.now
    )
    yield CounterMetricFamily(
        "asyncworkers_stuck_jobs_found", "Jobs the watchdog found stuck.", value=stuck.found_total
    )
    if view.store is not None and reading.read_at is not None:
        yield from _store_families(reading)


def _manager_families(m: Any) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    yield CounterMetricFamily(
        "asyncworkers_dead_letters", "Jobs this worker sent to the dead letters.", value=m.dead
    )
    yield CounterMetricFamily(
        "asyncworkers_rejected", "Rows that could never run (dead-lettered unrun).",
        value=m.rejected,
    )  # fmt: skip
    yield CounterMetricFamily(
        "asyncworkers_lease_losses", "Claims this worker lost (heartbeat refused, write fenced).",
        value=m.lease_losses,
    )  # fmt: skip
    yield CounterMetricFamily(
        "asyncworkers_claimed", "Jobs claimed from the store.", value=m.claimed
    )
    latency = m.claim_latency
    claims = GaugeMetricFamily(
        "asyncworkers_claim_duration_seconds",
        "Claim query time over the last 1000 claims, by quantile (1: the maximum ever).",
        labels=("quantile",),
    )
    for q, value in (("0.5", latency.p50), ("0.9", latency.p90), ("0.99", latency.p99),
                     ("1", latency.max)):  # fmt: skip
        claims.add_metric((q,), value)
    yield claims
    yield CounterMetricFamily("asyncworkers_claims", "Claim queries made.", value=latency.count)


def _store_families(reading: StoreReading) -> Iterator[Metric]:
    from prometheus_client.core import GaugeMetricFamily

    from ..store import STATES

    depth = GaugeMetricFamily(
        "asyncworkers_store_jobs",
        "Jobs in the store by queue and state (read at most once per refresh interval).",
        labels=("queue", "state"),
    )
    for queue, counts in sorted(reading.queues.items()):
        for state in STATES:
            depth.add_metric((queue, state), counts.get(state, 0))
    yield depth
    oldest = reading.oldest
    yield GaugeMetricFamily(
        "asyncworkers_store_oldest_waiting_seconds",
        "How long the oldest due job has waited (0: none waiting).",
        value=0.0 if oldest is None else max(0.0, time.time() - oldest.run_at),
    )
    yield GaugeMetricFamily(
        "asyncworkers_store_up", "1 when the last store reading worked, else 0.",
        value=1.0 if reading.error is None else 0.0,
    )  # fmt: skip
    yield GaugeMetricFamily(
        "asyncworkers_store_read_seconds", "How long the last store reading took.",
        value=reading.seconds,
    )  # fmt: skip
