"""What a Manager does besides running jobs: periodic tasks and the retention of ended jobs.

The Manager starts each loop :func:`upkeep_loops` returns in its task group, and cancels
them when it stops; every worker runs them, with no leader (see ``_periodic`` for why that
enqueues each periodic run once, and ``purge`` deletes in small batches, so that workers
purging at once only share the work).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any

import anyio

from ._periodic import PeriodicScheduler
from ._protocol import Store
from ._tasks import TaskRegistry

__all__ = ["check_retention", "upkeep_loops"]

log = logging.getLogger("asyncworkers.store")

# Purge every tenth of the retention, but no more often than every few seconds (a tiny
# retention must not make a busy loop) nor less often than hourly.
_PURGE_MIN = 5.0
_PURGE_MAX = 3600.0


def check_retention(retention: object) -> float | None:
    """``retention=`` of a Manager: seconds > 0 (or a timedelta's), or None."""
    if retention is None:
        return None
    seconds = getattr(retention, "total_seconds", lambda: retention)()
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"retention must be seconds or a timedelta, got {retention!r}")
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"retention must be seconds > 0, got {retention!r}")
    return float(seconds)


def upkeep_loops(
    store: Store, tasks: TaskRegistry, *, periodic: bool, retention: float | None
) -> list[Callable[[], Coroutine[Any, Any, None]]]:
    """The loops a Manager runs beside its claims: none, one or both."""
    loops: list[Callable[[], Coroutine[Any, Any, None]]] = []
    scheduler = PeriodicScheduler(store, tasks)
    if periodic and scheduler:
        loops.append(scheduler.run)
    if retention is not None:
        loops.append(functools.partial(_retain, store, retention))
    return loops


async def _retain(store: Store, retention: float) -> None:
    """Delete the jobs that ended more than *retention* seconds ago, now and then."""
    every = min(max(retention / 10, _PURGE_MIN), _PURGE_MAX)
    while True:
        try:
            deleted = await store.purge(time.time() - retention)
        except Exception:
            log.exception("retention: purging ended jobs failed")
        else:
            if deleted:
                log.info("retention: deleted %d job(s) ended over %g s ago", deleted, retention)
        await anyio.sleep(every)
