"""What a job is: the unit of work a user hands in, and the handle they get back."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Generator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from ._exceptions import AsyncworkersError

if TYPE_CHECKING:
    from ._cancel import CancellationToken
    from ._options import Options
    from ._retry import Retry

__all__ = ["Job", "JobState", "Kind", "Priority", "WorkUnit", "current_job"]

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


class _Owner(Protocol):
    """What a job needs from the runtime that runs it."""

    _loop: asyncio.AbstractEventLoop | None

    def _cancel_job(self, job: Job[Any], reason: str | None) -> bool: ...


_current_job: ContextVar[Job[Any] | None] = ContextVar("asyncworkers_current_job", default=None)


def current_job() -> Job[Any] | None:
    """The job whose code is running now (in its task or its thread), or None outside a job."""
    return _current_job.get()


class Job(Generic[T]):
    """The handle of a submitted job. Await it for the result (or the job's exception).

    Handles are made by the runtime, never by hand, and belong to the runtime's event loop:
    call their methods from that loop's thread.
    """

    __slots__ = (
        "_callbacks",
        "_hook",
        "_opts",
        "_owner",
        "_stop",
        "_tb",
        "_value",
        "args",
        "attempts",
        "finished_at",
        "fn",
        "id",
        "kwargs",
        "priority",
        "queued_at",
        "started_at",
        "state",
    )

    def __init__(
        self,
        owner: _Owner,
        job_id: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any] | None,
        priority: int,
        opts: Options,
        queued_at: float,
    ) -> None:
        self._owner = owner
        self.id = job_id
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.priority = priority
        self._opts = opts
        self.state = JobState.PENDING
        self.attempts = 0
        self.queued_at = queued_at
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._value: Any = None
        # The traceback of a failure as it ended the job: re-raised with it every time, so
        # that reading a failed result many times does not grow the traceback.
        self._tb: TracebackType | None = None
        # What stops this job when it is cancelled: the cancel scope, the worker task or the
        # timer it runs or waits under; see Runtime._cancel_job.
        self._hook: Any = None
        # Set once a stop was asked for (JobCancelled or JobTimeout); a stop request wins
        # over whatever the job does after it.
        self._stop: AsyncworkersError | None = None
        self._callbacks: list[Callable[[Job[T]], object]] | None = None

    # -- what a user reads --------------------------------------------------------------

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
        return self.finished_at is not None

    def cancelled(self) -> bool:
        return self.state is JobState.CANCELLED

    def result(self) -> T:
        """The job's return value; raises its exception, or ``InvalidStateError`` if not done."""
        if self.finished_at is None:
            raise asyncio.InvalidStateError(f"{self!r} has not finished")
        if self.state is JobState.COMPLETED:
            return self._value  # type: ignore[no-any-return]
        raise self._value.with_traceback(self._tb)

    def exception(self) -> BaseException | None:
        """The exception that ended the job (``JobCancelled`` if cancelled), None on success."""
        if self.finished_at is None:
            raise asyncio.InvalidStateError(f"{self!r} has not finished")
        return None if self.state is JobState.COMPLETED else self._value

    def cancel(self, reason: str | None = None) -> bool:
        """Cancel the job: a pending one never starts, a running one is stopped.

        Returns True if the job was pending or running, False if it had already finished.
        """
        if reason is not None and not isinstance(reason, str):
            raise TypeError(f"cancel(reason=...) must be a str or None, got {reason!r}")
        return self._owner._cancel_job(self, reason)

    def add_done_callback(self, fn: Callable[[Job[T]], object]) -> None:
        """Call ``fn(job)`` once the job finishes; at once if it already has."""
        if not callable(fn):
            raise TypeError(f"add_done_callback() needs a callable, got {fn!r}")
        if self.finished_at is not None:
            call_logged(fn, self)
        elif self._callbacks is None:
            self._callbacks = [fn]
        else:
            self._callbacks.append(fn)

    async def wait(self) -> JobState:
        """Wait until the job finishes, whatever the outcome, and return its final state."""
        if self.finished_at is None:
            await self._future()
        return self.state

    def __await__(self) -> Generator[Any, None, T]:
        if self.finished_at is None:
            # _future(), inlined: awaiting a handle is on the path of every awaited job.
            loop = asyncio.get_running_loop()
            if loop is not self._owner._loop:
                raise RuntimeError(_foreign_loop(self))
            future: asyncio.Future[None] = loop.create_future()
            if self._callbacks is None:
                self._callbacks = [_Wakeup(future)]
            else:
                self._callbacks.append(_Wakeup(future))
            yield from future.__await__()
        if self.state is JobState.COMPLETED:
            return self._value  # type: ignore[no-any-return]
        raise self._value.with_traceback(self._tb)

    def __repr__(self) -> str:
        return (
            f"<Job id={self.id} name={self.name!r} state={self.state.name} "
            f"attempts={self.attempts}>"
        )

    # -- what the runtime calls ---------------------------------------------------------

    def _future(self) -> asyncio.Future[None]:
        # A future per waiter, made only when someone waits: a cancelled waiter then
        # cancels its own future and never the others'.
        loop = asyncio.get_running_loop()
        if loop is not self._owner._loop:
            raise RuntimeError(_foreign_loop(self))
        future: asyncio.Future[None] = loop.create_future()
        self.add_done_callback(_Wakeup(future))
        return future

    def _run_callbacks(self) -> None:
        callbacks, self._callbacks = self._callbacks, None
        if callbacks:
            for fn in callbacks:
                call_logged(fn, self)


def _foreign_loop(job: Job[Any]) -> str:
    return (
        f"{job!r} belongs to the event loop of its runtime and cannot be awaited from another "
        "one (its wake-up would never reach this loop); from other threads use SyncRuntime, "
        "or asyncio.run_coroutine_threadsafe() onto the runtime's loop"
    )


class _Wakeup:
    """A done-callback that resolves one waiter's future."""

    __slots__ = ("_future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self._future = future

    def __call__(self, job: Job[Any]) -> None:
        if not self._future.done():
            self._future.set_result(None)


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
