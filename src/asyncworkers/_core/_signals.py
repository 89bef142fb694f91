"""SIGINT and SIGTERM for the runtimes that ask for them, and ``run()``, the entry point.

An event loop has one handler per signal, so runtimes do not install their own: each one
that was made with ``handle_signals=True`` subscribes to the loop's hub, which installs the
handlers with the first subscriber and restores the previous ones after the last.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import signal
import weakref
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final, Protocol, TypeVar, TypeVarTuple

import anyio

__all__ = ["SIGNALS", "SignalDrain", "run", "subscribe", "uvloop_available"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

logger = logging.getLogger("asyncworkers")

SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)

_Handler = Callable[[signal.Signals], object]


class _Hub:
    """The signal handlers of one event loop, shared by every subscribed runtime."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._subscribers: list[_Handler] = []
        self._previous: dict[signal.Signals, Any] = {}

    def add(self, handler: _Handler) -> None:
        if not self._subscribers:
            self._install()
        self._subscribers.append(handler)

    def remove(self, handler: _Handler) -> None:
        self._subscribers.remove(handler)
        if not self._subscribers:
            self._uninstall()

    def _install(self) -> None:
        for signum in SIGNALS:
            previous = signal.getsignal(signum)
            try:
                self._loop.add_signal_handler(signum, self._deliver, signum)
            except (ValueError, RuntimeError, NotImplementedError) as exc:
                self._uninstall()
                raise RuntimeError(
                    "handle_signals=True needs an event loop running in the main thread "
                    f"of a platform with signal support: {exc}"
                ) from exc
            self._previous[signum] = previous

    def _uninstall(self) -> None:
        for signum, previous in self._previous.items():
            self._loop.remove_signal_handler(signum)
            if previous is not None:  # None: installed from C, nothing to put back
                signal.signal(signum, previous)
        self._previous.clear()

    def _deliver(self, signum: signal.Signals) -> None:
        for handler in list(self._subscribers):
            try:
                handler(signum)
            except Exception:
                logger.exception("signal handler %r raised", handler)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Hub] = weakref.WeakKeyDictionary()


def subscribe(handler: _Handler) -> Callable[[], None]:
    """Call ``handler(signum)`` on SIGINT and SIGTERM; returns the function that unsubscribes.

    Must be called in the running loop; raises RuntimeError where signals cannot be handled
    (a loop outside the main thread, or a platform without ``add_signal_handler``).
    """
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = _Hub(loop)
    hub.add(handler)
    return lambda: hub.remove(handler)


def run(main: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
    """Run ``main(*args)`` in a new event loop and return its result, like ``anyio.run``.

    The loop is uvloop's when uvloop is installed, asyncio's otherwise. Signals are left to
    the runtimes made with ``handle_signals=True``: SIGINT or SIGTERM starts their graceful
    shutdown and a second one cancels what is left (see ``Runtime``).
    """
    if not callable(main):
        raise TypeError(f"run() needs an async function to call, got {main!r}")
    options = {"use_uvloop": uvloop_available()}
    return anyio.run(main, *args, backend="asyncio", backend_options=options)


class _Drains(Protocol):
    """What a SignalDrain needs of its runtime."""

    @property
    def accepting(self) -> bool: ...

    def _hurry_up(self, reason: str) -> None: ...


class SignalDrain:
    """``Runtime(handle_signals=True)``: the first SIGINT or SIGTERM ends the body of the
    ``async with`` block, which then drains on its way out; the second cancels what is left.

    The body runs in a cancel scope of its own, entered after the workers start and left
    before they stop, so that a signal cancels the body and never the workers.
    """

    def __init__(self, runtime: _Drains) -> None:
        self._runtime = runtime
        self._body: anyio.CancelScope | None = None
        self._seen = 0
        self._unsubscribe: Callable[[], None] | None = None

    def subscribe(self) -> None:
        """Start listening; RuntimeError where signals cannot be handled (see subscribe)."""
        self._unsubscribe = subscribe(self._on_signal)

    def enter_body(self) -> None:
        self._body = anyio.CancelScope()
        self._body.__enter__()

    def leave_body(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """Leave the body's scope; True if it swallowed the cancellation a signal sent."""
        scope, self._body = self._body, None
        return scope is not None and bool(scope.__exit__(exc_type, exc, tb))

    def unsubscribe(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_signal(self, signum: signal.Signals) -> None:
        self._seen += 1
        runtime = self._runtime
        if self._seen == 1 and runtime.accepting and self._body is not None:
            logger.warning(
                "%s received: draining %s (send it again to cancel the jobs left)",
                signum.name,
                runtime,
            )
            self._body.cancel()
            return
        logger.warning("%s received: cancelling the jobs of %s", signum.name, runtime)
        runtime._hurry_up(f"cancelled by {signum.name}")


@functools.cache
def uvloop_available() -> bool:
    """Whether uvloop can be imported here (the loop of ``run()`` and ``SyncRuntime``)."""
    return importlib.util.find_spec("uvloop") is not None
