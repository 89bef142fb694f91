"""LeanFuture: a ``concurrent.futures.Future`` whose owner and waiters use a plain lock.

A stock ``Future`` makes a ``threading.Condition`` when it is made and goes through it (pure
Python: a waiter lock per ``wait()``, a deque, ``notify_all()``) for every result. That is
most of the cost of a ``ThreadPoolExecutor`` round trip, and it was most of a
``SyncRuntime`` round trip's: making the future ~10,800 instructions, setting and reading
its result ~13,400 more, where handing a result across threads on a one-shot lock costs
~9,800 in all (callgrind, ``benchmarks/icount.py``).

This one keeps the stock fields, so that every method it does not override, and
``concurrent.futures.wait()``, ``as_completed()`` and ``asyncio.wrap_future()``, work as they
do on any future: they lock and notify through ``_condition``, which is made the first time
one of them asks for it, over the same lock the fast paths take. What is overridden:

- ``result()``, ``exception()``: a thread that must wait blocks on the one-shot lock
  ``_ended``, released when the future finishes (each waiter passes it on to the next).
- ``set_result()``, ``set_exception()``: set under the lock, wake what ``wait()`` and
  ``as_completed()`` registered and the Condition's waiters (if it exists), release
  ``_ended``, then call the done-callbacks, as the stock ones do.
- ``done()``: a read of the state.

A LeanFuture is never CANCELLED in the ``concurrent.futures`` sense: its owner decides
what ``cancel()`` means (see ``_sync._JobFuture``), and finishes it with an exception.
"""

from __future__ import annotations

import threading
from _thread import RLock, get_ident
from _thread import allocate_lock as Lock
from concurrent.futures import CancelledError, Future, InvalidStateError
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
)
from typing import Any, Final, TypeVar

__all__ = ["LeanFuture"]

T = TypeVar("T")

_FINAL: Final = frozenset((CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED))
_CANCELLED: Final = frozenset((CANCELLED, CANCELLED_AND_NOTIFIED))

# Serialises making a future's Condition (rare: only for the stock code that asks for it).
_making_condition = threading.Lock()


class LeanFuture(Future[T]):
    """A ``concurrent.futures.Future`` that is cheap to make, finish and wait for."""

    # Future.__init__'s fields, but the Condition. Those that start as None (or PENDING)
    # are class defaults, written per future only when they change.
    _state: str = PENDING
    _result: T | None = None
    _exception: BaseException | None = None
    _made_condition: threading.Condition | None = None
    # A thread that must not wait on this future without a timeout (it would deadlock):
    # result() from it takes the slow path, where _check_may_wait() says why.
    _no_wait_ident: int | None = None

    def __init__(self) -> None:
        # Not Future.__init__, which makes the Condition.
        self._lock = RLock()  # the C type: threading.RLock() is a Python function around it
        self._waiters: list[Any] = []
        self._done_callbacks: list[Any] = []
        # Held until the future finishes; a waiting thread blocks on it.
        self._ended = ended = Lock()
        ended.acquire()

    # The stock methods (and concurrent.futures.wait(), as_completed()) find the Condition
    # here; it is made over the lock the fast paths take, so both exclude each other.
    @property
    def _condition(self) -> threading.Condition:
        condition = self._made_condition
        if condition is None:
            with _making_condition:
                condition = self._made_condition
                if condition is None:
                    condition = self._made_condition = threading.Condition(self._lock)
        return condition

    @_condition.setter
    def _condition(self, condition: threading.Condition) -> None:
        self._made_condition = condition

    def done(self) -> bool:
        return self._state in _FINAL

    def result(self, timeout: float | None = None) -> T:
        if self._state is not FINISHED:
            if timeout is None and get_ident() != self._no_wait_ident:  # the common wait
                ended = self._ended
                ended.acquire()
                ended.release()  # the next waiter's turn
            else:
                self._wait("Future.result()", timeout)
        if self._exception is not None:
            try:
                raise self._exception
            finally:
                self = None  # type: ignore[assignment]  # no cycle through the traceback
        return self._result  # type: ignore[return-value]

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state is not FINISHED:
            self._wait("Future.exception()", timeout)
        return self._exception

    def set_result(self, result: T) -> None:
        self._finish(result, None)

    def set_exception(self, exception: BaseException | None) -> None:
        self._finish(None, exception)

    # -- helpers ----------------------------------------------------------------------

    def _wake_waiters(self, exception: BaseException | None) -> None:
        for waiter in self._waiters:
            if exception is None:
                waiter.add_result(self)
            else:
                waiter.add_exception(self)

    def _check_may_wait(self, what: str, timeout: float | None) -> None:
        """Called by *what* before it waits: a subclass raises here if it must not."""

    def _wait(self, what: str, timeout: float | None) -> None:
        """Wait until the future is finished; TimeoutError after *timeout* seconds."""
        if self._state is FINISHED:
            return
        self._check_may_wait(what, timeout)
        ended = self._ended
        if timeout is None:
            got = ended.acquire()
        elif timeout > 0:
            got = ended.acquire(True, timeout)
        else:  # as Condition.wait(): zero or less only looks
            got = ended.acquire(False)
        if got:
            ended.release()  # the next waiter's turn
        state = self._state
        if state in _CANCELLED:  # only by Future.cancel(future) itself, bypassing ours
            raise CancelledError()
        if state is not FINISHED:
            raise TimeoutError()

    def _finish(self, result: T | None, exception: BaseException | None) -> None:
        with self._lock:
            if self._state in _FINAL:
                raise InvalidStateError(f"{self._state}: {self!r}")
            if exception is None:
                self._result = result
            else:
                self._exception = exception
            self._state = FINISHED
            if self._waiters:  # wait() and as_completed()
                self._wake_waiters(exception)
            if self._made_condition is not None:
                self._made_condition.notify_all()
        self._ended.release()
        if self._done_callbacks:
            self._invoke_callbacks()  # type: ignore[attr-defined]
