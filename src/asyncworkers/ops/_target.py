"""What the endpoint watches: a plain Runtime or a store Manager, behind one small view.

The rest of the package asks a view for readiness, the running jobs, the counters and the
store (None for a plain Runtime), and never looks at which of the two it has.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncworkers as aw

if TYPE_CHECKING:
    from ..store import Manager, Store

__all__ = ["Running", "View", "view_of"]


@dataclass(frozen=True, slots=True)
class Running:
    """One running job as the dashboard and the watchdog see it."""

    id: int  # the store's id for a Manager's job, the handle's id for a Runtime's
    task: str
    queue: str
    age: float  # seconds since it started
    job: aw.Job[Any]


class View:
    """The common face of a Runtime and a Manager."""

    kind: str = ""

    @property
    def runtime(self) -> aw.Runtime | None:
        raise NotImplementedError

    @property
    def store(self) -> Store | None:
        return None

    @property
    def manager(self) -> Manager | None:
        return None

    def readiness(self) -> str | None:
        """None when ready, else why not."""
        raise NotImplementedError

    def running(self) -> list[Running]:
        raise NotImplementedError


class RuntimeView(View):
    kind = "runtime"

    def __init__(self, runtime: aw.Runtime) -> None:
        self._runtime = runtime

    @property
    def runtime(self) -> aw.Runtime:
        return self._runtime

    def readiness(self) -> str | None:
        if not self._runtime.accepting:
            return "shutting down"
        if self._runtime.paused:
            return "paused"
        return None

    def running(self) -> list[Running]:
        now = time.monotonic()
        return [
            Running(job.id, job.name, "", now - (job.started_at or now), job)
            for job in self._runtime.running_jobs()
        ]


class ManagerView(View):
    kind = "manager"

    def __init__(self, manager: Manager) -> None:
        self._manager = manager

    @property
    def runtime(self) -> aw.Runtime | None:
        return self._manager.runtime

    @property
    def store(self) -> Store:
        return self._manager.store

    @property
    def manager(self) -> Manager:
        return self._manager

    def readiness(self) -> str | None:
        manager = self._manager
        if manager.stopping:
            return "draining: the worker is stopping"
        if manager.store_error is not None:
            return f"database away: {manager.store_error}"
        if manager.paused:
            return "paused"
        return None

    def running(self) -> list[Running]:
        now = time.monotonic()
        found = []
        for claimed, job in self._manager.held_jobs():
            if job is None or job.started_at is None or job.done():
                continue
            found.append(
                Running(claimed.id, claimed.task, claimed.queue, now - job.started_at, job)
            )
        return found


def view_of(target: object) -> View:
    """The view of *target*; TypeError for anything that is neither kind."""
    from ..store import Manager

    if isinstance(target, aw.Runtime):
        return RuntimeView(target)
    if isinstance(target, Manager):
        return ManagerView(target)
    raise TypeError(f"asyncworkers.ops serves an aw.Runtime or an aw.store.Manager, got {target!r}")
