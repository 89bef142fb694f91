"""Periodic tasks: every worker enqueues the due runs, and each run is enqueued once.

There is no leader to elect. At each instant of a schedule every worker that knows the task
reads the task's *mark* (the latest instant enqueued, kept in the store), and, if the instant
is past it, moves the mark to the instant and adds the run's job in one transaction, with a
compare-and-set on the mark (``Store.advance_schedule``). Of the workers racing, one wins;
the others find the mark moved and add nothing. The job also carries an idempotency key
naming the instant (``periodic:NAME:INSTANT``), so even a store that lost the mark cannot
enqueue one instant twice while its job is kept.

- A task seen for the first time (no mark) gets its mark set to the latest instant, and no
  run: a new schedule starts at its next instant, not with a run from the past.
- After a time with no worker up, a look finds several instants past the mark: by default
  only the latest is enqueued (no burst of stale runs); ``catch_up`` enqueues the missed
  ones too, up to its limit, oldest first.
- Instants are judged by each worker's clock: hosts should keep theirs in sync (NTP). A
  worker whose clock runs behind finds the mark ahead and adds nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio

from ._protocol import NewJob, Store
from ._tasks import TaskRegistry, TaskSpec

__all__ = ["PeriodicScheduler"]

log = logging.getLogger("asyncworkers.store")

# Longest sleep between two looks: a wall clock set forward (or a suspended host) is noticed
# within this, since the sleep itself runs on the monotonic clock.
_MAX_SLEEP = 60.0
# A look after a failed one (the database away) comes no sooner than this.
_RETRY_PAUSE = 1.0


class PeriodicScheduler:
    """Enqueues the due runs of a registry's periodic tasks into a store.

    :param clock: the wall clock, unix seconds (tests pass a fake one and call :meth:`tick`)
    """

    def __init__(
        self, store: Store, tasks: TaskRegistry, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._tasks = tasks
        self._clock = clock
        self._specs = tasks.periodic_tasks()

    def __bool__(self) -> bool:
        return bool(self._specs)

    async def tick(self) -> int:
        """Enqueue what is due now; how many jobs this call added."""
        now = self._clock()
        added = 0
        for spec in self._specs:
            added += await self._look(spec, now)
        return added

    async def _look(self, spec: TaskSpec, now: float) -> int:
        periodic = spec.periodic
        assert periodic is not None
        latest = periodic.schedule.latest(now)
        seen = await self._store.schedule_mark(spec.name)
        if seen is not None and seen >= latest:
            return 0  # done already, by us or another worker
        instants = [] if seen is None else periodic.schedule.missed(seen, now, periodic.runs)
        jobs = [self._job(spec, instant) for instant in instants]
        if not await self._store.advance_schedule(spec.name, seen, latest, jobs):
            return 0
        if len(instants) > 1:
            log.info("periodic %s: %d missed runs enqueued (catch_up)", spec.name, len(jobs))
        return len(jobs)

    def _job(self, spec: TaskSpec, instant: float) -> NewJob:
        periodic = spec.periodic
        assert periodic is not None
        return self._tasks.job(
            spec.name, periodic.args, run_at=instant, key=periodic.key(spec.name, instant)
        )

    def seconds_to_next(self) -> float:
        """Seconds from now to the next instant of any schedule (at most a minute)."""
        now = self._clock()
        soonest = min(
            spec.periodic.schedule.next_after(now) for spec in self._specs if spec.periodic
        )
        return min(max(soonest - now, 0.0), _MAX_SLEEP)

    async def run(self) -> None:
        """Look at each instant, forever (until cancelled); a failed look is logged and
        made again (a run missed meanwhile is enqueued as after a downtime)."""
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("periodic tasks: enqueueing the due runs failed")
                await anyio.sleep(_RETRY_PAUSE)
            # A timer may fire a little early: the look then finds nothing new and the
            # next wait is the little that is left.
            await anyio.sleep(self.seconds_to_next())
