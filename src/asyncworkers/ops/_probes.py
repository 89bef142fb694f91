"""Liveness and readiness: a thread that times the event loop, and what readiness means.

A blocked loop cannot answer a request about itself, so liveness is not measured by the
request: a probe thread asks the loop to run a tiny callback every ``interval`` seconds and
times the answer. While an ask is unanswered the loop is blocked for at least that long;
``/healthz`` (answered by the listener thread, see ``_listener``) reads that age.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

__all__ = ["Health", "LoopProbe"]

# How often the probe asks the loop to answer: the resolution of the lag it reports.
PROBE_INTERVAL = 0.25


@dataclass(frozen=True, slots=True)
class Health:
    """What ``/healthz`` answers."""

    live: bool
    lag: float  # seconds: the unanswered ask's age, or the last answer's delay
    threshold: float

    def as_json(self) -> dict[str, object]:
        return {
            "status": "ok" if self.live else "blocked",
            "loop_lag_seconds": round(self.lag, 6),
            "threshold_seconds": self.threshold,
        }


class LoopProbe:
    """Times how fast *loop* runs a callback, from a daemon thread.

    ``lag()`` is the age of the ask the loop has not answered yet, or else the delay of the
    last answer: the longest the loop has kept a ready callback waiting. ``max_lag()`` is the
    largest lag since the previous call (the ``asyncworkers_loop_lag_seconds`` gauge).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        threshold: float,
        interval: float | None = None,
    ) -> None:
        self._loop = loop
        self.threshold = threshold
        self._interval = PROBE_INTERVAL if interval is None else interval
        self._asked_at: float | None = None  # the unanswered ask, if any
        self._last_lag = 0.0
        self._max_lag = 0.0
        self._stop = threading.Event()
        self._answered = threading.Event()
        self._thread = threading.Thread(target=self._run, name="asyncworkers-loop-probe")
        self._thread.daemon = True  # never keeps a process alive

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._answered.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def lag(self) -> float:
        asked = self._asked_at
        if asked is not None:
            return max(time.monotonic() - asked, self._last_lag)
        return self._last_lag

    def max_lag(self) -> float:
        """The largest lag seen since the last call (and the current one)."""
        seen, self._max_lag = max(self._max_lag, self.lag()), 0.0
        return seen

    def health(self) -> Health:
        lag = self.lag()
        return Health(live=lag <= self.threshold, lag=lag, threshold=self.threshold)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._answered.clear()
            asked = time.monotonic()
            self._asked_at = asked
            try:
                self._loop.call_soon_threadsafe(self._answer, asked)
            except RuntimeError:  # the loop is closed: nothing left to time
                return
            self._answered.wait()
            self._stop.wait(self._interval)

    def _answer(self, asked: float) -> None:
        lag = time.monotonic() - asked
        self._last_lag = lag
        self._max_lag = max(self._max_lag, lag)
        self._asked_at = None
        self._answered.set()
