"""What a job is: the unit of work a user hands in, and the handle they get back."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Generator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, TypeVar, Union

import anyio

from ._exceptions import AsyncworkersError

if TYPE_CHECKING:
    from ._cancel import CancellationToken
    from ._options import Options
    from ._retry import Retry

__all__ = [
    "INJECTED",
    "Extras",
    "Hook",
    "Job",
    "JobState",
    "Kind",
    "Priority",
    "Seat",
    "WorkUnit",
    "current_job",
]

T = TypeVar("T")
Kind = Literal["async", "thread", "process"]

logger = logging.getLogger("asyncworkers")


class Priority(enum.IntEnum):
    """Named priority levels. Higher runs first; any int is accepted as a priority."""

    LOWEST = 0
    LOW = 1
    NORMAL = 2
    HIGH = 3
    HIGHEST = 4


class JobState(enum.Enum):
    """Where a job is in its life. The last three are terminal: a job reaches one, once."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(slots=True)
class WorkUnit(Generic[T]):
    """A function, its arguments and how to run it, for :meth:`Runtime.enqueue`."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    callback: Callable[[T], object] | None = None
    priority: int = Priority.NORMAL
    name: str | None = None
    timeout: float | None = None
    retry: Retry | None = None
    token: CancellationToken | None = None
    metadata: Mapping[str, Any] | None = None
    kind: Kind | None = None

    def __post_init__(self) -> None:
        # The shape is checked here, where the unit is made; the options are checked by
        # the runtime's option parser when the unit is enqueued, like those of submit.
        if not callable(self.fn):
            raise TypeError(f"WorkUnit(fn=...) must be callable, got {self.fn!r}")
        if not isinstance(self.args, tuple):
            raise TypeError(f"WorkUnit(args=...) must be a tuple, got {self.args!r}")
        if not isinstance(self.kwargs, Mapping):
            raise TypeError(f"WorkUnit(kwargs=...) must be a mapping, got {self.kwargs!r}")
        bad = [key for key in self.kwargs if not isinstance(key, str)]
        if bad:
            raise TypeError(f"WorkUnit(kwargs=...) keys must be str, got {bad[0]!r}")


class Seat:
    """Where a worker keeps the job it runs now (the runtime's workers are Seats)."""

    __slots__ = ("job",)

    def __init__(self) -> None:
        self.job: Job[Any] | None = None


# The current job, for current_job() and check_cancelled(): a worker task's context holds
# its Seat, set once, and the job is the one in the seat; a thread job's context holds the
# job itself. Setting a context variable per job would cost a job a twentieth of its price.
_current_job: ContextVar[Job[Any] | Seat | None] = ContextVar(
    "asyncworkers_current_job", default=None
)


def current_job() -> Job[Any] | None:
    """The job whose code is running now (in its task or its thread), or None outside a job.

    In a task or thread that a job started itself, it is the job that its worker runs now:
    the job itself for as long as the job waits for what it started.
    """
    current = _current_job.get()
    if current is None or type(current) is Job:
        return current
    return current.job  # type: ignore[union-attr]


class Injected:
    """The hook of an inline job whose worker task was sent ``cancel()`` for it: the worker
    takes that cancellation back (``Task.uncancel()``) when the job has stopped."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<injected cancel>"


INJECTED: Final = Injected()

# What stops a job that is asked to, while it is in a state that has one: the cancel scope it
# runs (or waits for a thread) under, the timer of its retry backoff, or INJECTED.
Hook = Union[anyio.CancelScope, asyncio.TimerHandle, Injected]  # noqa: UP007 (a runtime alias)

_PENDING: Final = JobState.PENDING
_RUNNING: Final = JobState.RUNNING
_COMPLETED: Final = JobState.COMPLETED
_FAILED: Final = JobState.FAILED
_CANCELLED: Final = JobState.CANCELLED


class Extras:
    """The rarely used parts of a job, made the first time one is needed, so that a plain
    job carries one empty field instead of four."""

    __slots__ = ("hook", "kwargs", "stop", "tb")

    def __init__(self, kwargs: Mapping[str, Any] | None = None) -> None:
        self.kwargs = kwargs
        # See Hook; None when nothing is there to stop.
        self.hook: Hook | None = None
        # A stop request (JobCancelled, or JobTimeout from a thread job's timer). It wins
        # over whatever the job does after it, and only an explicit stop replaces a timeout.
        self.stop: AsyncworkersError | None = None
        # The traceback of the failure that ended the job: re-raised with it every time, so
        # that reading a failed result many times does not grow the traceback.
        self.tb: TracebackType | None = None


class Job(Generic[T]):
    """The handle of a submitted job. Await it for the result (or the job's exception).

    Handles are made by the runtime, never by hand, and belong to the runtime's event loop:
    call their methods from that loop's thread, except :meth:`cancel`, which any thread may
    call. Its state, attempts and timings are read-only to users. The runtime moves a job
    through these transitions, each written in one place::

        queued ---start---> running ---end---> COMPLETED | FAILED | CANCELLED
          ^                    |
          +---_requeue()--- retry-wait (_back_off(): PENDING again, holding no worker)

    *start* is the worker's (``Runtime._work``: attempts + 1, ``started_at``); *end* is
    ``Runtime._end`` (with its inlined twin for a job that simply completed, in the same
    worker loop), which also ends a queued or waiting job that is cancelled. A stop request
    (:meth:`_ask_to_stop`) does not change the state: the job ends when it stops.
    """

    __slots__ = (
        "_attempts",
        "_extras",
        "_finished_at",
        "_opts",
        "_outcome",
        "_queued_at",
        "_started_at",
        "_state",
        "args",
        "fn",
        "id",
        "priority",
    )

    def __init__(
        self,
        job_id: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        priority: int,
        opts: Options,
        queued_at: float,
        extras: Extras | None = None,
    ) -> None:
        # Runtime.submit_nowait makes its plain jobs with these same stores, inlined: keep
        # the two in step (tests/test_runtime.py compares them).
        self.id = job_id
        self.fn = fn
        self.args = args
        self.priority = priority
        self._opts = opts
        self._state = _PENDING
        self._attempts = 0
        self._queued_at = queued_at
        # _started_at and _finished_at stay unset until the transition that sets them
        # (start, end): stores saved on every job, and nothing reads them before but the
        # properties below, which say None.
        self._started_at: float
        self._finished_at: float
        # One slot for two things that never coexist, to keep the handle small: until the
        # job ends, its done-callbacks and the futures of the tasks awaiting it (a list, or
        # None); from then on, its result or its exception.
        self._outcome: Any = None
        self._extras = extras

    # -- what a user reads --------------------------------------------------------------

    @property
    def state(self) -> JobState:
        """Where the job is in its life; the last three states are final."""
        return self._state

    @property
    def attempts(self) -> int:
        """How many times the job has started (retries included)."""
        return self._attempts

    @property
    def queued_at(self) -> float:
        """When the job was queued (``time.monotonic()``; for a retry, when it was requeued)."""
        return self._queued_at

    @property
    def started_at(self) -> float | None:
        """When the job's last attempt started, None before."""
        return getattr(self, "_started_at", None)

    @property
    def finished_at(self) -> float | None:
        """When the job finished, None before."""
        return getattr(self, "_finished_at", None)

    @property
    def kwargs(self) -> Mapping[str, Any] | None:
        """The keyword arguments (from a :class:`WorkUnit`), None when there are none."""
        extras = self._extras
        return None if extras is None else extras.kwargs

    @property
    def name(self) -> str:
        """The name given at submit time, else the function's qualified name."""
        return self._opts.name or _callable_name(self.fn)

    @property
    def kind(self) -> Kind:
        """How the job runs: ``"async"``, ``"thread"`` or ``"process"``."""
        return self._opts.kind

    @property
    def metadata(self) -> Mapping[str, Any]:
        """The metadata given at submit time (empty when none was)."""
        return self._opts.metadata or {}

    def done(self) -> bool:
        """True once the job is COMPLETED, FAILED or CANCELLED."""
        state = self._state
        return state is not _PENDING and state is not _RUNNING

    def cancelled(self) -> bool:
        """True once the job is CANCELLED."""
        return self._state is _CANCELLED

    def result(self) -> T:
        """The job's return value; raises its exception, or ``InvalidStateError`` if not done."""
        state = self._state
        if state is _COMPLETED:
            return self._outcome  # type: ignore[no-any-return]
        if state is _PENDING or state is _RUNNING:
            raise asyncio.InvalidStateError(f"{self!r} has not finished")
        raise self._reraise()

    def exception(self) -> BaseException | None:
        """The exception that ended the job (``JobCancelled`` if cancelled), None on success."""
        if not self.done():
            raise asyncio.InvalidStateError(f"{self!r} has not finished")
        return None if self._state is _COMPLETED else self._outcome

    def cancel(self, reason: str | None = None) -> bool:
        """Cancel the job: a pending one never starts, a running one is stopped.

        Returns True if the job was pending or running, False if it had already finished.
        Safe to call from any thread: from outside the runtime's loop the cancel is carried
        out there, soon after.
        """
        if reason is not None and not isinstance(reason, str):
            raise TypeError(f"cancel(reason=...) must be a str or None, got {reason!r}")
        return self._opts.owner._cancel_job(self, reason)

    def add_done_callback(self, fn: Callable[[Job[T]], object]) -> None:
        """Call ``fn(job)`` once the job finishes; at once if it already has."""
        if not callable(fn):
            raise TypeError(f"add_done_callback() needs a callable, got {fn!r}")
        if self.done():
            call_logged(fn, self)
        elif self._outcome is None:
            self._outcome = [fn]
        else:
            self._outcome.append(fn)

    async def wait(self) -> JobState:
        """Wait until the job finishes, whatever the outcome, and return its final state."""
        if not self.done():
            await self._waiter()
        return self._state

    def __await__(self) -> Generator[Any, None, T]:
        state = self._state  # done(), inlined: awaiting is on the path of most jobs
        if state is _COMPLETED:
            return self._outcome  # type: ignore[no-any-return]
        if state is _PENDING or state is _RUNNING:
            yield from self._waiter().__await__()
            if self._state is _COMPLETED:
                return self._outcome  # type: ignore[no-any-return]
        raise self._reraise()

    def __repr__(self) -> str:
        return (
            f"<Job id={self.id} name={self.name!r} state={self._state.name} "
            f"attempts={self._attempts}>"
        )

    # -- the transitions (the runtime's, and only the runtime's) --------------------------

    def _back_off(self, timer: asyncio.TimerHandle) -> None:
        """running -> retry-wait: PENDING again, holding no worker until *timer* fires."""
        self._state = _PENDING
        self._extras_made().hook = timer

    def _requeue(self, now: float) -> None:
        """retry-wait -> queued: the backoff is over."""
        self._extras_made().hook = None
        self._queued_at = now

    def _ask_to_stop(self, error: AsyncworkersError) -> Hook | None:
        """Record a stop request and return the hook that carries it out, if any."""
        extras = self._extras_made()
        extras.stop = error
        return extras.hook

    # -- helpers ----------------------------------------------------------------------

    @property
    def _stop(self) -> AsyncworkersError | None:
        """The stop request, if one was made."""
        extras = self._extras
        return None if extras is None else extras.stop

    @property
    def _hook(self) -> Hook | None:
        extras = self._extras
        return None if extras is None else extras.hook

    def _set_hook(self, hook: Hook | None) -> None:
        self._extras_made().hook = hook

    def _extras_made(self) -> Extras:
        extras = self._extras
        if extras is None:
            extras = self._extras = Extras()
        return extras

    def _reraise(self) -> BaseException:
        """The stored failure, with the traceback it ended the job with."""
        extras = self._extras
        return self._outcome.with_traceback(None if extras is None else extras.tb)  # type: ignore[no-any-return]

    def _waiter(self) -> asyncio.Future[None]:
        # A future per waiter, made only when someone waits: a cancelled waiter then
        # cancels its own future and never the others'.
        loop = asyncio.get_running_loop()
        if loop is not self._opts.owner._loop:
            raise RuntimeError(_foreign_loop(self))
        future: asyncio.Future[None] = loop.create_future()
        if self._outcome is None:
            self._outcome = [future]
        else:
            self._outcome.append(future)
        return future

    def _run_callbacks(
        self, callbacks: list[Callable[[Job[T]], object] | asyncio.Future[None]]
    ) -> None:
        """Wake the waiters and call the done-callbacks (taken from the job as it ended), in
        the order they came."""
        for callback in callbacks:
            if isinstance(callback, asyncio.Future):
                if not callback.done():  # its waiter may have been cancelled
                    callback.set_result(None)
            else:
                call_logged(callback, self)


def _foreign_loop(job: Job[Any]) -> str:
    return (
        f"{job!r} belongs to the event loop of its runtime and cannot be awaited from another "
        "one (its wake-up would never reach this loop); from other threads use SyncRuntime, "
        "or asyncio.run_coroutine_threadsafe() onto the runtime's loop"
    )


def _callable_name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        inner = getattr(fn, "func", None)  # functools.partial
        return _callable_name(inner) if inner is not None else type(fn).__qualname__
    return str(name)


def call_logged(fn: Callable[..., object], *args: Any) -> None:
    """Call user code that must not break the runtime: log whatever it raises.

    That includes ``CancelledError`` and other ``BaseException`` subclasses: sync code raising
    one is not the caller being cancelled (a cancellation arrives at an ``await``, and this
    awaits nothing), so it must not cancel the worker, skip later hooks or lose a wake-up.
    ``KeyboardInterrupt`` and ``SystemExit`` keep their meaning and propagate, as they do
    from asyncio's own callbacks.
    """
    try:
        fn(*args)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:
        logger.exception("asyncworkers: callback %r raised", fn)
