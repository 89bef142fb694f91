"""The stuck-job watchdog: at an interval, find jobs running longer than a threshold.

Each stuck job is logged once (id, task, age), counted in ``/metrics``, listed on the
dashboard and, with ``stuck_action="cancel"``, cancelled (a Manager's job then ends like
any cancelled job: a failed attempt, in the dead letters). Nothing is done per job on the
hot path: a look walks the jobs running at that moment.
"""

from __future__ import annotations

import logging

import anyio

from ._metrics import Stuck
from ._options import Options
from ._target import Running, View

__all__ = ["Watchdog"]

log = logging.getLogger("asyncworkers.ops")


class Watchdog:
    """Looks at *view*'s running jobs every ``options.watchdog_interval`` seconds."""

    def __init__(self, view: View, options: Options, stuck: Stuck) -> None:
        assert options.stuck_after is not None
        self._view = view
        self._after = options.stuck_after
        self._cancel = options.stuck_action == "cancel"
        self._interval = options.watchdog_interval
        self._stuck = stuck
        self._seen: set[int] = set()  # ids already reported (only of jobs still running)
        self.current: list[Running] = []

    async def run(self) -> None:
        while True:
            await anyio.sleep(self._interval)
            self.look()

    def look(self) -> list[Running]:
        """One look: the jobs stuck now (reported and acted on if new)."""
        running = self._view.running()
        stuck = [r for r in running if r.age > self._after]
        still = {r.id for r in running}
        self._seen &= still  # forget jobs that ended: the set never outgrows the running ones
        for found in stuck:
            if found.id in self._seen:
                continue
            self._seen.add(found.id)
            self._stuck.found_total += 1
            action = "cancelling it" if self._cancel else "still running"
            log.warning(
                "stuck job %s (task %s%s) running for %.1f s, over %g s: %s",
                found.id, found.task, f", queue {found.queue}" if found.queue else "",
                found.age, self._after, action,
            )  # fmt: skip
            if self._cancel:
                found.job.cancel(f"stuck: running for {found.age:.1f} s, over {self._after:g} s")
        self._stuck.now = len(stuck)
        self.current = stuck
        return stuck
