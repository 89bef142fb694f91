"""CancellationToken: one switch that reaches every job, thread and scope that carries it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import anyio

from ._exceptions import JobCancelled
from ._units import call_logged, current_job
from ._validate import check_seconds

if TYPE_CHECKING:
    from ._units import Job

__all__ = ["CancellationToken", "TokenLinks", "check_cancelled"]

_keys = itertools.count()


class CancellationToken:
    """A thread-safe, one-way cancel switch.

    ``cancel()`` may be called from any thread. Callbacks registered with :meth:`register` run
    once, in the thread that cancels (at once, if the token is already cancelled); the
    runtime's own callbacks hop onto their event loop. A :meth:`child` token is cancelled with
    its parent, never the other way round.
    """

    __slots__ = ("__weakref__", "_callbacks", "_event", "_lock", "_reason", "cancelled")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cancelled = False
        self._reason: str | None = None
        self._callbacks: dict[object, Callable[[], object]] = {}
        self._event: threading.Event | None = None

    @property
    def reason(self) -> str | None:
        """The reason given to :meth:`cancel`, None before (or if none was given)."""
        return self._reason

    def cancel(self, reason: str | None = None) -> bool:
        """Cancel the token; True the first time, False if it already was cancelled."""
        if reason is not None and not isinstance(reason, str):
            raise TypeError(f"cancel(reason=...) must be a str or None, got {reason!r}")
        with self._lock:
            if self.cancelled:
                return False
            self._reason = reason
            self.cancelled = True
            callbacks, self._callbacks = self._callbacks, {}
            event = self._event
        if event is not None:
            event.set()
        for callback in callbacks.values():
            call_logged(callback)
        return True

    def register(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Call ``callback()`` once on cancellation; returns a function that unregisters it."""
        if not callable(callback):
            raise TypeError(f"register() needs a callable, got {callback!r}")
        key = next(_keys)
        if not self._link(key, callback):
            call_logged(callback)
        return lambda: self._unlink(key)

    def child(self) -> CancellationToken:
        """A new token that is cancelled (with this reason) when this one is."""
        child = CancellationToken()
        child_ref = weakref.ref(child)

        def cancel_child() -> None:
            target = child_ref()
            if target is not None:
                target.cancel(self._reason)

        unregister = self.register(cancel_child)
        # A child that is dropped must not stay registered on a long-lived parent.
        weakref.finalize(child, unregister)
        return child

    def raise_if_cancelled(self) -> None:
        """Raise :class:`JobCancelled` (with the reason) if the token is cancelled."""
        if self.cancelled:
            raise JobCancelled(self._reason)

    async def wait(self) -> None:
        """Wait until the token is cancelled."""
        if self.cancelled:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        unregister = self.register(_in_loop(loop, wake))
        try:
            await future
        finally:
            unregister()

    def wait_blocking(self, timeout: float | None = None) -> bool:
        """Block this thread until cancelled or *timeout* seconds pass; True if cancelled."""
        if timeout is not None:
            timeout = check_seconds("wait_blocking(timeout=...)", timeout, allow_zero=True)
            if timeout == math.inf:
                timeout = None  # threading.Event.wait() overflows on inf
        with self._lock:
            if self.cancelled:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)

    @contextmanager
    def scope(self) -> Iterator[anyio.CancelScope]:
        """Bind an async block to this token: cancelling the token cancels the block.

        Like :func:`anyio.move_on_after`, the scope absorbs its own cancellation: the block
        ends early and the code after it runs; look at ``token.cancelled`` to tell.
        """
        loop = asyncio.get_running_loop()
        with anyio.CancelScope() as cancel_scope:
            unregister = self.register(_in_loop(loop, cancel_scope.cancel))
            try:
                yield cancel_scope
            finally:
                unregister()

    def __repr__(self) -> str:
        state = f"cancelled reason={self._reason!r}" if self.cancelled else "active"
        return f"<CancellationToken {state}>"

    # -- for the runtime: registration without making a closure per job ------------------

    def _link(self, key: object, callback: Callable[[], object]) -> bool:
        """Register under *key*; False (and nothing registered) if already cancelled."""
        with self._lock:
            if self.cancelled:
                return False
            self._callbacks[key] = callback
            return True

    def _unlink(self, key: object) -> None:
        with self._lock:
            self._callbacks.pop(key, None)


class TokenLinks:
    """One runtime's jobs that carry tokens, by token: one registration on a token however
    many of the runtime's jobs carry it, instead of a callback, a lock round and a closure
    per job. A job links when it is accepted and unlinks when it ends; a token with no job
    left is unregistered, so that the runtime keeps no token alive.

    When a token is cancelled (in any thread), *cancel_jobs(jobs, reason)* runs on the
    runtime's loop with the jobs linked to it then.
    """

    __slots__ = ("_by_token", "_cancel_jobs", "loop")

    def __init__(self, cancel_jobs: Callable[[list[Job[Any]], str | None], None]) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None  # the runtime's, once started
        self._cancel_jobs = cancel_jobs
        self._by_token: dict[CancellationToken, set[Job[Any]]] = {}

    def link(self, token: CancellationToken, job: Job[Any]) -> bool:
        """Link *job* to *token*; False (and nothing linked) if the token is cancelled."""
        jobs = self._by_token.get(token)
        if jobs is None:
            jobs = self._by_token[token] = set()
            if not token._link(self, lambda: self._token_cancelled(token)):
                del self._by_token[token]
                return False
        jobs.add(job)
        return True

    def unlink(self, token: CancellationToken, job: Job[Any]) -> None:
        jobs = self._by_token.get(token)
        if jobs is not None:
            jobs.discard(job)
            if not jobs:
                del self._by_token[token]
                token._unlink(self)

    def close(self) -> None:
        """Unregister from every token (the runtime has stopped)."""
        for token in self._by_token:
            token._unlink(self)
        self._by_token.clear()

    def _token_cancelled(self, token: CancellationToken) -> None:
        """The token's callback, in the thread that cancelled it."""
        loop = self.loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._cancel_linked(token)
        else:
            with contextlib.suppress(RuntimeError):  # a closed loop: its jobs ended with it
                loop.call_soon_threadsafe(self._cancel_linked, token)

    def _cancel_linked(self, token: CancellationToken) -> None:
        jobs = self._by_token.pop(token, None)
        if jobs:
            self._cancel_jobs(list(jobs), token.reason)


def check_cancelled() -> None:
    """Raise :class:`JobCancelled` if the current job has been asked to stop.

    The cooperative stop for code in threads (and for async code between awaits): it sees a
    token cancel, ``job.cancel()``, a shutdown and, as :class:`JobTimeout`, an expired
    timeout. Outside a job it does nothing.
    """
    job = current_job()
    if job is not None and job._stop is not None:
        raise job._stop


def _in_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], object]) -> Callable[[], None]:
    """Wrap *fn* so that, called from any thread, it runs in *loop*'s thread."""

    def call() -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn()
        else:
            # A closed loop raises RuntimeError: nobody is left there to cancel.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fn)

    return call
