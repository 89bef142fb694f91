"""The exception tree: one root, and nothing that derives from ``CancelledError``.

``JobCancelled`` and ``JobTimeout`` are plain ``Exception`` subclasses on purpose: awaiting a
cancelled job must never look, to the awaiting task, like its own cancellation.
"""

from __future__ import annotations


class AsyncworkersError(Exception):
    """The root of every error this library raises on its own account."""

    # Shown as ``asyncworkers.QueueFull`` in tracebacks and reprs, where users import it
    # from, rather than by the private module that defines it (set on each class below).
    __module__ = "asyncworkers"


class JobCancelled(AsyncworkersError):
    """The job was cancelled: by ``job.cancel()``, by its token, or by shutdown."""

    __module__ = "asyncworkers"

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason if reason is not None else "job was cancelled")
        self.reason = reason


class JobTimeout(AsyncworkersError, TimeoutError):
    """The job ran longer than its ``timeout``."""

    __module__ = "asyncworkers"


class QueueFull(AsyncworkersError):
    """``submit_nowait`` found the bounded queue full (``max_pending`` reached)."""

    __module__ = "asyncworkers"


class RuntimeClosed(AsyncworkersError):
    """The runtime is shut down (or shutting down) and takes no more work."""

    __module__ = "asyncworkers"


class WorkerCrashed(AsyncworkersError):
    """The process that ran the job died (``os._exit``, a signal, out of memory)."""

    __module__ = "asyncworkers"
