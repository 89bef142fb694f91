"""A job that waits for another job of its own store, inside the worker that should run it.

``store.result(other)`` inside a job holds that job's slot while it waits. When every slot
that could run *other* on this worker is held by such a waiter, nothing here will ever run
it: with ``concurrency=1`` the first such wait is a deadlock. ``result()`` then raises
:class:`JobWouldDeadlock` at once instead of hanging (as Celery refuses ``result.get()``
inside a task). The check sees this process only: a job on a store object of its own, or a
job another worker could run, is not what it is about.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import asyncworkers as aw

from ._protocol import JobRecord

if TYPE_CHECKING:
    from ._manager import Manager

__all__ = ["register", "unregister", "waiting"]

_managers: weakref.WeakSet[Manager] = weakref.WeakSet()


def register(manager: Manager) -> None:
    _managers.add(manager)


def unregister(manager: Manager) -> None:
    _managers.discard(manager)


def _ignore(record: JobRecord) -> None:
    pass


@contextmanager
def waiting(store: Any) -> Iterator[Callable[[JobRecord], None]]:
    """Around ``result()``: a check of each record seen, raising JobWouldDeadlock when the
    job waited for can never get a slot of the Manager whose job is waiting."""
    job = aw.current_job()
    if job is None or not _managers:
        yield _ignore
        return
    for manager in list(_managers):
        check = manager._start_waiting(job, store)
        if check is not None:
            break
    else:
        yield _ignore
        return
    try:
        yield check
    finally:
        manager._stop_waiting(job)
